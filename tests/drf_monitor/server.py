"""Run the DRF monitor on 127.0.0.1: ``python -m tests.drf_monitor.server --db FILE``.

Creates the table, prints the jobs URL on its first line, serves until SIGTERM/SIGINT.
"""

import argparse
import os
import signal
import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from socketserver import ThreadingMixIn


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ["DRF_MONITOR_DB"] = args.db
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.drf_monitor.settings"
    import django
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)
    server = make_server("127.0.0.1", args.port, get_wsgi_application(),
                         server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    print(f"http://127.0.0.1:{server.server_address[1]}/api/jobs/", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
