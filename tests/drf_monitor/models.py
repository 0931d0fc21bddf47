"""The BigPanDA HTCondor jobs table: primary key ``id`` (GlobalJobId), every field nullable."""

from django.db import models


class Job(models.Model):
    id = models.CharField(primary_key=True, max_length=255)
    condorid = models.CharField(max_length=64, null=True, blank=True)
    owner = models.CharField(max_length=128, null=True, blank=True)
    submitted = models.DateTimeField(null=True, blank=True)
    run_time = models.FloatField(null=True, blank=True)
    cmd = models.TextField(null=True, blank=True)
    p_stdout = models.TextField(null=True, blank=True)
    p_stderr = models.TextField(null=True, blank=True)
    p_description = models.TextField(null=True, blank=True)
    pri = models.IntegerField(null=True, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    GlobalJobId = models.CharField(max_length=255, null=True, blank=True)
    ClusterId = models.IntegerField(null=True, blank=True)
    ProcId = models.IntegerField(null=True, blank=True)
    LastJobStatus = models.IntegerField(null=True, blank=True)
    JobStatus = models.IntegerField(null=True, blank=True)
    EnteredCurrentStatus = models.BigIntegerField(null=True, blank=True)
    ExitCode = models.IntegerField(null=True, blank=True)
    RemoteHost = models.CharField(max_length=255, null=True, blank=True)
    removed = models.BooleanField(default=False)

    class Meta:
        app_label = "drf_monitor"
