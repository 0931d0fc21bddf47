"""The two BigPanDA HTCondor jobs tables pandad is tested against; primary key ``id``
(GlobalJobId).

* ``Job``: the 2014 BigPanDA monitor's columns (``cmd``, ``owner``, ``submitted``, ...), every
  field nullable; pandad fills them with the 2014 ``PANDA_ATTRIBUTE_MAP``.
* ``HTCondorJob``: the fields of the last upstream monitor, PanDAWMS/panda-bigmon-htcondor
  ``api/models.py``, with its types, lengths and nullability: ClassAd spellings, which pandad
  sends with default knobs. ``submitted`` is read-only there (``editable=False``); its
  ``wmsid`` was a ``CommaSeparatedIntegerField``, which Django 2 removed: here the CharField
  with the validator Django offers in its place.
"""

from django.core.validators import validate_comma_separated_integer_list
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


class HTCondorJob(models.Model):
    id = models.CharField(primary_key=True, max_length=100)
    factory = models.CharField(max_length=64, blank=True)
    Schedd = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    submitted = models.DateTimeField(editable=False, null=True, blank=True)
    last_modified = models.DateTimeField(auto_now=True)
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=3, blank=True)
    LastJobStatus = models.IntegerField(null=True, blank=True)
    EnteredCurrentStatus = models.IntegerField(null=True, blank=True)
    GridResource = models.CharField(max_length=255, blank=True)
    Environment = models.CharField(max_length=1024, blank=True)
    GlobalJobId = models.CharField(max_length=100, null=True, blank=True)
    Requirements = models.CharField(max_length=1024, blank=True)
    Cmd = models.CharField(max_length=64, blank=True)
    wmsid = models.CharField(max_length=1024, blank=True,
                             validators=[validate_comma_separated_integer_list])

    class Meta:
        app_label = "drf_monitor"
