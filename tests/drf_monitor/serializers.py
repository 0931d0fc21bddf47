from rest_framework import serializers

from tests.drf_monitor.bulk import BulkSerializerMixin, LookupBulkListSerializer
from tests.drf_monitor.models import HTCondorJob, Job


class JobSerializer(BulkSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = "__all__"
        list_serializer_class = LookupBulkListSerializer


class HTCondorJobSerializer(BulkSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = HTCondorJob
        fields = "__all__"
        list_serializer_class = LookupBulkListSerializer
