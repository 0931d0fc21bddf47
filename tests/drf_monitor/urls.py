from django.urls import path

from tests.drf_monitor.views import JobList

urlpatterns = [path("api/jobs/", JobList.as_view())]
