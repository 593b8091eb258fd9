"""Why an image was not downloaded: the exact strings the UI counts failures under."""

INVALID_URL = "invalid_url"
UNSUPPORTED_SCHEME = "unsupported_scheme"
SSRF_BLOCKED = "ssrf_blocked"
DNS_ERROR = "dns_error"
CONNECTION_ERROR = "connection_error"
TIMEOUT = "timeout"
HTTP_STATUS_PREFIX = "http_status:"  # + the status code, e.g. "http_status:404"
TOO_LARGE = "too_large"
NOT_AN_IMAGE = "not_an_image"
ROBOTS_DISALLOWED = "robots_disallowed"
X_ROBOTS_NOAI = "x_robots_noai"
TOO_MANY_REDIRECTS = "too_many_redirects"
EMPTY_BODY = "empty_body"

# Every reason but the http_status:<code> family.
REASONS = (INVALID_URL, UNSUPPORTED_SCHEME, SSRF_BLOCKED, DNS_ERROR, CONNECTION_ERROR, TIMEOUT, TOO_LARGE,
           NOT_AN_IMAGE, ROBOTS_DISALLOWED, X_ROBOTS_NOAI, TOO_MANY_REDIRECTS, EMPTY_BODY)  # fmt: skip


def http_status(code: int) -> str:
    return f"{HTTP_STATUS_PREFIX}{code}"
