"""Shims that make djangorestframework-bulk 0.2.1 (written for DRF 3.0-3.5) work on DRF 3.18.

1. DRF validates each element of a ``many=True`` update with ``child.instance`` unset, so the
   primary key's UniqueValidator rejects every existing id ("already exists") and a partial
   update validates as a create. DRF's own docstring says to override
   ``run_child_validation`` to look the instance up; an id that is not found is left without
   instance, and drf-bulk's ``update`` then rejects the array ("Could not find all objects to
   update."), as it did on old DRF.
2. ``ListCreateBulkUpdateAPIView`` creates with DRF's single-object ``CreateModelMixin``; the
   monitor takes a JSON array, so ``get_serializer`` passes ``many=True`` for a list (as the
   BigPanDA views do).
"""

from rest_framework_bulk import BulkListSerializer, BulkSerializerMixin  # noqa: F401
from rest_framework_bulk import ListCreateBulkUpdateAPIView


class LookupBulkListSerializer(BulkListSerializer):
    def run_child_validation(self, data):
        self.child.instance = None
        if self.instance is not None and isinstance(data, dict) and "id" in data:
            self.child.instance = self.instance.filter(pk=data["id"]).first()
        self.child.initial_data = data
        try:
            return super().run_child_validation(data)
        finally:
            self.child.instance = None


class ListCreateBulkUpdateView(ListCreateBulkUpdateAPIView):
    def get_serializer(self, *args, **kwargs):
        if isinstance(kwargs.get("data"), list):
            kwargs["many"] = True
        return super().get_serializer(*args, **kwargs)
