"""A real Django REST Framework + djangorestframework-bulk jobs monitor, for the contract test.

Modelled on PanDAWMS/panda-bigmon-htcondor (the BigPanDA HTCondor API, peers.md §D1): jobs
models keyed by ``id``, each behind a ``ListCreateBulkUpdateAPIView``: ``api/jobs/`` with the
2014 monitor's column names, ``htcondor/api/jobs/`` with panda-bigmon-htcondor's own model
(ClassAd spellings). Development only: never imported by pandad.

    python -m tests.drf_monitor.server --db FILE     # prints the api/jobs/ URL, serves on 127.0.0.1
"""
