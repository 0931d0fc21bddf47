"""``api/jobs/`` (the 2014 model): POST an array → 201; bulk PUT (partial) → 200, one unknown
id → 400; DELETE an array → 204, known jobs marked removed (unknown ids ignored).

``htcondor/api/jobs/`` (panda-bigmon-htcondor's model): the same POST and PUT; DELETE → 204 and
nothing else, as that monitor's view does."""

from django.db import transaction
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from tests.drf_monitor.bulk import ListCreateBulkUpdateView
from tests.drf_monitor.models import HTCondorJob, Job
from tests.drf_monitor.serializers import HTCondorJobSerializer, JobSerializer


class _PartialBulkUpdate:
    def put(self, request, *args, **kwargs):
        # PanDA monitors apply the UPDATE array as a partial update (the C++ pandad sent only
        # changed attributes); atomic so a rejected array leaves nothing half-applied.
        with transaction.atomic():
            return self.partial_bulk_update(request, *args, **kwargs)


class HTCondorJobList(_PartialBulkUpdate, ListCreateBulkUpdateView):
    queryset = HTCondorJob.objects.all().order_by("id")
    serializer_class = HTCondorJobSerializer

    def delete(self, request, *args, **kwargs):
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobList(_PartialBulkUpdate, ListCreateBulkUpdateView):
    queryset = Job.objects.all().order_by("id")
    serializer_class = JobSerializer

    def delete(self, request, *args, **kwargs):
        items = request.data
        if not isinstance(items, list) or not all(
                isinstance(item, dict) and isinstance(item.get("id"), str) for item in items):
            raise ValidationError("expected a JSON array of objects with an id")
        with transaction.atomic():
            for item in items:
                job = Job.objects.filter(pk=item["id"]).first()
                if job is None:
                    continue
                serializer = self.get_serializer(job, data=item, partial=True)
                serializer.is_valid(raise_exception=True)
                serializer.save(removed=True)
        return Response(status=status.HTTP_204_NO_CONTENT)
