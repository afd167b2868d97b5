"""A Kinesis endpoint that accepts everything at once, for measuring the daemon's own cost on
its real output path (request building, JSON, base64, HTTP) without an emulator's: issue 18.

  instant_kinesis.py --port P [--shards N]

It answers the calls the daemon makes as Kinesis does, with nothing stored:

- DescribeStreamSummary: the stream is ACTIVE with N shards (any stream name);
- PutRecords: every record is decoded (base64) and counted, and gets a SequenceNumber and
  the ShardId whose hash key range holds the MD5 of its partition key, in request order;
  FailedRecordCount 0. A malformed request (no Records, a record without Data or
  PartitionKey, Data that is not base64) is answered with 400 and
  ValidationException, as Kinesis would, so a wrong client shows;
- PutRecord: the same for one record.

Anything else is a 400 UnknownOperationException. It prints "ready" on stdout when listening,
and counts calls, records and bytes at GET /_stats (JSON).
"""

import argparse
import base64
import binascii
import hashlib
import http.server
import json
import threading

MAX_HASH = 2**128


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.values = {"calls": 0, "records": 0, "bytes": 0, "rejected_calls": 0}

    def add(self, **counts):
        with self.lock:
            for name, value in counts.items():
                self.values[name] += value


def make_handler(shards, stats):
    sequence = [0]
    sequence_lock = threading.Lock()

    def shard_of(partition_key):
        hashed = int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")
        return f"shardId-{hashed * shards // MAX_HASH:012d}"

    def next_sequence():
        with sequence_lock:
            sequence[0] += 1
            return f"{sequence[0]:056d}"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY the body waits for the
        # client's delayed ACK of the headers (about 40 ms a call), which is not Kinesis.
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def reply(self, status, document):
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def invalid(self, message):
            stats.add(rejected_calls=1)
            self.reply(400, {"__type": "ValidationException", "message": message})

        def do_GET(self):
            if self.path == "/_stats":
                with stats.lock:
                    return self.reply(200, dict(stats.values))
            self.reply(404, {"message": "not found"})

        def record(self, record):
            """The answer for one record, or None when it is malformed."""
            if not isinstance(record, dict) or "PartitionKey" not in record or "Data" not in record:
                return None
            try:
                data = base64.b64decode(record["Data"], validate=True)
            except (binascii.Error, TypeError):
                return None
            stats.add(records=1, bytes=len(data) + len(record["PartitionKey"].encode()))
            return {"SequenceNumber": next_sequence(), "ShardId": shard_of(record["PartitionKey"])}

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
            try:
                request = json.loads(body)
            except ValueError:
                return self.invalid("the request body is not JSON")
            stats.add(calls=1)
            if operation == "DescribeStreamSummary":
                name = request.get("StreamName") or "stream"
                return self.reply(200, {"StreamDescriptionSummary": {
                    "StreamName": name,
                    "StreamARN": f"arn:aws:kinesis:us-east-1:000000000000:stream/{name}",
                    "StreamStatus": "ACTIVE",
                    "StreamModeDetails": {"StreamMode": "PROVISIONED"},
                    "RetentionPeriodHours": 24,
                    "StreamCreationTimestamp": 0,
                    "EnhancedMonitoring": [],
                    "OpenShardCount": shards,
                    "ConsumerCount": 0,
                }})
            if operation == "PutRecords":
                records = request.get("Records")
                if not isinstance(records, list) or not 1 <= len(records) <= 500:
                    return self.invalid("Records must hold 1 to 500 records")
                answers = [self.record(r) for r in records]
                if any(a is None for a in answers):
                    return self.invalid("a record lacks PartitionKey or base64 Data")
                return self.reply(200, {"FailedRecordCount": 0, "Records": answers})
            if operation == "PutRecord":
                answer = self.record(request)
                if answer is None:
                    return self.invalid("the record lacks PartitionKey or base64 Data")
                return self.reply(200, answer)
            self.reply(400, {"__type": "UnknownOperationException",
                             "message": f"{operation} is not answered here"})

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port),
                                             make_handler(args.shards, Stats()))
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
