"""A local HTTP mirror for the download tests: it serves files as a real mirror does (also behind
a redirect, as the Hugging Face Hub sends downloads to its CDN), or fails the way real mirrors fail
(error statuses, ignored Range requests, dropped or stalled connections)."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MirrorHandler(BaseHTTPRequestHandler):
    """Answers GET /<name> with `server.files[name]`, as the server's behaviour says."""

    def do_GET(self):
        mirror = self.server
        name, byte_range = self.path.lstrip("/"), self.headers["Range"]
        mirror.requests.append((name, byte_range))
        if mirror.status or name not in mirror.files and name not in mirror.redirects:
            self.send_error(mirror.status or 404)
            return
        if name in mirror.redirects:
            self.send_response(302)
            self.send_header("Location", mirror.url + mirror.redirects[name])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        content, start = mirror.files[name], 0
        if byte_range and not mirror.ignore_range:  # helper only asks for "bytes=N-"
            start = int(byte_range.removeprefix("bytes=").removesuffix("-"))
            if start >= len(content):  # as real servers do: nothing left to send
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(content) - start))
        self.end_headers()
        body = content[start:][: mirror.cut_after]  # a cut body still promises the full length
        mirror.bytes_sent += len(body)  # counted before sending, so the client never sees it stale
        self.wfile.write(body)
        if mirror.hang:  # keep the connection open in silence until the test ends
            mirror.closing.wait()

    def log_message(self, format, *args):  # keep the test output quiet
        pass


class Mirror(ThreadingHTTPServer):
    """A mirror at `self.url` (127.0.0.1, an ephemeral port), serving from a background thread.

    `files` maps names to bytes; wrong bytes in it make a mirror that serves a wrong file.
    `redirects` maps names to names in `files`: a request for one is answered 302, Found there.
    Behaviours: `status` answers every request with that HTTP error; `ignore_range` answers
    200 with the whole file even to a Range request; `cut_after` sends only that many bytes of
    the body, then closes the connection (or with `hang`, keeps it open without a byte more).
    `requests` lists each request's (name, Range header); `bytes_sent` counts body bytes.
    """

    def __init__(self, files, status=None, ignore_range=False, cut_after=None, hang=False, redirects=None):
        super().__init__(("127.0.0.1", 0), MirrorHandler)
        self.files, self.redirects, self.status, self.ignore_range = files, redirects or {}, status, ignore_range
        self.cut_after, self.hang = cut_after, hang
        self.requests, self.bytes_sent = [], 0
        self.url = f"http://127.0.0.1:{self.server_port}/"
        self.closing = threading.Event()
        # A short poll interval lets shutdown() return at once rather than after half a second.
        self.thread = threading.Thread(target=self.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def close(self):
        self.closing.set()
        self.shutdown()
        self.server_close()
        self.thread.join()
