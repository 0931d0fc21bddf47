"""A real Django REST Framework + djangorestframework-bulk jobs monitor, for the contract test.

Modelled on PanDAWMS/panda-bigmon-htcondor (the BigPanDA HTCondor API, peers.md §D1): a jobs
model keyed by ``id`` with the C++ plug-in's field names, and ``jobs/`` as a
``ListCreateBulkUpdateAPIView``. Development only: never imported by pandad.

    python -m tests.drf_monitor.server --db FILE     # prints its URL, serves on 127.0.0.1
"""
