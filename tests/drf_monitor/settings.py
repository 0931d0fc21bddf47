"""Django settings for the contract test's DRF monitor (127.0.0.1 only, no auth, sqlite)."""

import os

SECRET_KEY = "pandad-contract-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["rest_framework", "tests.drf_monitor"]
ROOT_URLCONF = "tests.drf_monitor.urls"
MIDDLEWARE: list = []
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("DRF_MONITOR_DB", ":memory:")}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False                     # pandad sends "submitted" as local "YYYY-MM-DD HH:MM:SS"
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
