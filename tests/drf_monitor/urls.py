from django.urls import path

from tests.drf_monitor.views import HTCondorJobList, JobList

urlpatterns = [path("api/jobs/", JobList.as_view()),
               path("htcondor/api/jobs/", HTCondorJobList.as_view())]
