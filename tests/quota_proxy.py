"""A loopback HTTP proxy in front of a Kinesis emulator that enforces Kinesis's per-shard write
quotas, because no emulator throttles (see ../shared/docs/emulators.md, section 6).

  quota_proxy.py --port P --target http://127.0.0.1:T --shards N
                 [--records-per-second 1000] [--bytes-per-second 1048576]

Every shard of every stream gets a token bucket of records and one of bytes (data plus
partition key), each holding one second of quota and refilled continuously. A record goes to
the shard whose hash key range holds the MD5 of its partition key, as Kinesis routes it; the
ranges are the even split Kinesis makes for a stream of N shards. Over quota, the proxy answers
exactly as Kinesis does:

- PutRecords: the over-quota records get ErrorCode ProvisionedThroughputExceededException with
  FailedRecordCount counting them; the others are forwarded (in their order) and their results
  merged back in request order.
- PutRecord: the whole call fails with HTTP 400 and __type ProvisionedThroughputExceededException.

Everything else passes through untouched. It prints "ready" on stdout when listening, and
counts what it throttled at GET /_quota (JSON), for tests and the benchmark.
"""

import argparse
import base64
import hashlib
import http.client
import http.server
import json
import threading
import time
import urllib.parse

THROTTLED = "ProvisionedThroughputExceededException"


class Bucket:
    def __init__(self, per_second):
        self.rate = float(per_second)
        self.tokens = float(per_second)
        self.last = time.monotonic()

    def refill(self, now):
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now


class Quotas:
    def __init__(self, shards, records, data_bytes):
        self.shards = shards
        self.records = records
        self.bytes = data_bytes
        self.buckets = {}
        self.lock = threading.Lock()
        # put_payload_units: what Kinesis bills, one per started 25 KB of each record.
        self.stats = {"accepted_records": 0, "throttled_records": 0, "accepted_bytes": 0,
                      "throttled_calls": 0, "put_payload_units": 0, "streams": {}}

    def shard_of(self, partition_key):
        value = int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")
        return min(value * self.shards >> 128, self.shards - 1)

    def admit(self, stream, partition_key, size):
        """Takes one record of `size` bytes from its shard's buckets; False when over quota."""
        shard = self.shard_of(partition_key)
        with self.lock:
            key = (stream, shard)
            if key not in self.buckets:
                self.buckets[key] = (Bucket(self.records), Bucket(self.bytes))
            records, data = self.buckets[key]
            now = time.monotonic()
            records.refill(now)
            data.refill(now)
            if records.tokens >= 1 and data.tokens >= size:
                records.tokens -= 1
                data.tokens -= size
                self.stats["accepted_records"] += 1
                self.stats["accepted_bytes"] += size
                self.stats["put_payload_units"] += max(1, -(-size // (25 * 1024)))
                # Per stream: when its first and last records were accepted, and its bytes,
                # to measure a rate over the time it was actually written to.
                window = self.stats["streams"].setdefault(stream, {"first": now, "bytes": 0})
                window["last"] = now
                window["bytes"] += size
                return True
            self.stats["throttled_records"] += 1
            return False


def make_handler(target, quotas):
    parsed = urllib.parse.urlparse(target)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body are two writes: without TCP_NODELAY the body waits for the client's
        # delayed ACK of the headers (about 40 ms a call), which is not Kinesis.
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def forward(self, body):
            connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("content-length", "host", "connection")}
            headers["Content-Length"] = str(len(body))
            headers["Host"] = parsed.netloc
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            connection.close()
            return response.status, response.getheaders(), data

        def reply(self, status, headers, body):
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding",
                                        "date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/_quota":
                with quotas.lock:
                    body = json.dumps(quotas.stats).encode()
                return self.reply(200, [("Content-Type", "application/json")], body)
            self.reply(*self.forward(b""))

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
            if operation == "PutRecords":
                return self.put_records(body)
            if operation == "PutRecord":
                request = json.loads(body)
                size = len(base64.b64decode(request["Data"])) + len(request["PartitionKey"].encode())
                if not quotas.admit(request.get("StreamName", ""), request["PartitionKey"], size):
                    with quotas.lock:
                        quotas.stats["throttled_calls"] += 1
                    error = json.dumps({"__type": THROTTLED,
                                        "message": "Rate exceeded for shard in stream"}).encode()
                    return self.reply(400, [("Content-Type", "application/x-amz-json-1.1")], error)
            self.reply(*self.forward(body))

        def put_records(self, body):
            request = json.loads(body)
            stream = request.get("StreamName", "")
            admitted = []
            for record in request["Records"]:
                size = len(base64.b64decode(record["Data"])) + len(record["PartitionKey"].encode())
                admitted.append(quotas.admit(stream, record["PartitionKey"], size))
            results = [None] * len(admitted)
            headers = [("Content-Type", "application/x-amz-json-1.1")]
            forwarded = [r for r, ok in zip(request["Records"], admitted) if ok]
            if forwarded:
                request["Records"] = forwarded
                status, headers, answer = self.forward(json.dumps(request).encode())
                if status != 200:
                    return self.reply(status, headers, answer)
                stored = iter(json.loads(answer)["Records"])
                for index, ok in enumerate(admitted):
                    if ok:
                        results[index] = next(stored)
            for index, ok in enumerate(admitted):
                if not ok:
                    results[index] = {"ErrorCode": THROTTLED,
                                      "ErrorMessage": "Rate exceeded for shard in stream"}
            answer = {"FailedRecordCount": sum(1 for r in results if "ErrorCode" in r),
                      "Records": results}
            self.reply(200, headers, json.dumps(answer).encode())

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--records-per-second", type=float, default=1000)
    parser.add_argument("--bytes-per-second", type=float, default=1024 * 1024)
    args = parser.parse_args()
    quotas = Quotas(args.shards, args.records_per_second, args.bytes_per_second)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port),
                                             make_handler(args.target, quotas))
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
