from django.apps import AppConfig


class DrfMonitorConfig(AppConfig):
    name = "tests.drf_monitor"
    label = "drf_monitor"
