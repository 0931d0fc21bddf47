"""Which web proxy reaches the monitor, as libcurl chooses it (docs/design.md §4.5).

``choose_proxy`` reads ``PANDA_HTTP_PROXY`` or, when that is empty, the environment
(``https_proxy``/``HTTPS_PROXY``, ``http_proxy``, ``no_proxy``/``NO_PROXY``) as libcurl does;
``parse_proxy`` turns the chosen URL into host, port and the Basic credential for CONNECT.
"""

import base64
import ipaddress
import re
from typing import Any, Mapping, NamedTuple, Optional
from urllib.parse import unquote, urlsplit

from pandad.httpconn import TransportError
from pandad.logsetup import redact_url

CURL_PROXY_PORT = 1080        # libcurl's port for a proxy URL without one


class ProxyChoice(NamedTuple):
    """What ``choose_proxy`` decided, and why (for the one start-up log line)."""
    url: Optional[str]         # the proxy to use; None = connect directly
    source: str                # where the proxy URL came from ("" if none was configured)
    skipped_by: str = ""       # why a configured proxy is not used ("no_proxy", ...)


def choose_proxy(setting: str, scheme: str, host: str,
                 environ: Mapping[str, str]) -> ProxyChoice:
    """The proxy for ``scheme://host``, from PANDA_HTTP_PROXY or the environment as libcurl.

    ``setting`` is PANDA_HTTP_PROXY: a URL is used whatever the environment says, ``none``
    means never a proxy, empty leaves it to the environment: ``https_proxy`` then
    ``HTTPS_PROXY`` for https, only ``http_proxy`` (lower-case, as curl) for http, unless
    ``no_proxy`` (or ``NO_PROXY``) names the host. An empty variable counts as unset.
    """
    setting = setting.strip()
    if setting and setting.lower() != "none":
        return ProxyChoice(setting, "PANDA_HTTP_PROXY")
    names = ("https_proxy", "HTTPS_PROXY") if scheme == "https" else ("http_proxy",)
    name, url = next(((n, environ[n].strip()) for n in names if environ.get(n, "").strip()),
                     ("", ""))
    if not url:
        return ProxyChoice(None, "")
    if setting:
        return ProxyChoice(None, name, "PANDA_HTTP_PROXY = none")
    no_proxy_name = "no_proxy" if environ.get("no_proxy") else "NO_PROXY"
    if no_proxy_matches(environ.get(no_proxy_name, ""), host):
        return ProxyChoice(None, name, no_proxy_name)
    return ProxyChoice(url, name)


def no_proxy_matches(no_proxy: str, host: str) -> bool:
    """Whether ``host`` is in a no_proxy list, as curl matches it.

    Entries are separated by commas or blanks; ``*`` matches every host; a name matches
    itself and its subdomains (a leading dot changes nothing); an IP address matches an
    equal address or a network written as address/bits.
    """
    host = host.strip("[]").rstrip(".").lower()
    try:
        address: Any = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in re.split(r"[\s,]+", no_proxy.lower()):
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.strip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


class Proxy(NamedTuple):
    host: str
    port: int
    authorization: Optional[str]   # "Basic ..." from the URL's user:password
    for_log: str                   # the URL with its password replaced by ***


def parse_proxy(url: str, source: str) -> Proxy:
    """An http:// proxy URL (no scheme = http://, as curl); anything else: TransportError."""
    text = url if "://" in url else "http://" + url
    for_log = redact_url(text)
    try:
        parts = urlsplit(text)
        port = parts.port or CURL_PROXY_PORT
    except ValueError:
        raise TransportError("other", f"{source} = {for_log} is not a valid proxy URL") \
            from None
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise TransportError("other", f"{source} = {for_log} is not an http://host:port proxy"
                             f" (pandad supports only http:// proxies; PANDA_HTTP_PROXY sets"
                             f" one, or none)")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(parts.hostname, port, authorization, for_log)


# -- credential files ------------------------------------------------------------------------
