"""Builds a large MySQL 8 compressed transaction for scripts/bench (`--only compressed`).

From the real fixture tests/fixtures/mysql-binlogs/transaction_compression.000001 (one
TRANSACTION_PAYLOAD holding BEGIN, a table map, one WRITE_ROWS of one row, XID): the same
transaction with its rows event repeated `events` times, each holding the row `rows` times,
and `padding` 64 KiB ROWS_QUERY events the reader reads past (so that the transaction is large
uncompressed), compressed again with the `zstd` command as a stream. The Rust test
`source::compressed_tests` builds the same file the same way.
"""

import os
import struct
import subprocess
import threading
import zlib

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "tests", "fixtures", "mysql-binlogs", "transaction_compression.000001")


def frames(data, at=0):
    """(offset, frame) of every event in `data` from `at`."""
    while at + 19 <= len(data):
        size = struct.unpack_from("<I", data, at + 9)[0]
        yield at, data[at:at + size]
        at += size


def lenenc(value):
    if value < 251:
        return bytes([value])
    if value < 1 << 16:
        return b"\xfc" + struct.pack("<H", value)
    if value < 1 << 24:
        return b"\xfd" + struct.pack("<I", value)[:3]
    return b"\xfe" + struct.pack("<Q", value)


def read_lenenc(data, at):
    first = data[at]
    if first < 251:
        return first, at + 1
    width = {0xfc: 2, 0xfd: 3, 0xfe: 8}[first]
    return int.from_bytes(data[at + 1:at + 1 + width], "little"), at + 1 + width


def payload_fields(body):
    """The payload event's header fields, and where its payload starts."""
    fields, at = {}, 0
    while True:
        field, at = read_lenenc(body, at)
        if field == 0:
            return fields, at
        length, at = read_lenenc(body, at)
        fields[field], _ = read_lenenc(body, at)
        at += length


def build(path, events, rows, padding):
    """Writes the file; returns (rows in it, uncompressed bytes, compressed bytes)."""
    data = open(FIXTURE, "rb").read()
    offset, frame = next((o, f) for o, f in frames(data, 4) if f[4] == 40)
    body = frame[19:-4]
    fields, start = payload_fields(body)
    inner = subprocess.run(["zstd", "-d", "-c"], input=body[start:start + fields[1]],
                           stdout=subprocess.PIPE, check=True).stdout
    zstd = subprocess.Popen(["zstd", "-3", "-c", "-q"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    out = []
    reader = threading.Thread(target=lambda: out.append(zstd.stdout.read()))
    reader.start()
    uncompressed = 0

    def put(chunk):
        nonlocal uncompressed
        zstd.stdin.write(chunk)
        uncompressed += len(chunk)

    for _, event in frames(inner):
        if event[4] != 30:
            put(event)
            continue
        query = bytearray(event[:19]) + b"\xff" + b"x" * ((64 << 10) - 20)
        query[4] = 29
        query[9:13] = struct.pack("<I", len(query))
        for _ in range(padding):
            put(bytes(query))
        # WRITE_ROWS v2: header, table id 6, flags 2, extra-data length 2 (counting itself),
        # column count, the columns-present bitmap, then the rows.
        extra = struct.unpack_from("<H", event, 27)[0]
        columns, at = read_lenenc(event, 27 + extra)
        at += (columns + 7) // 8
        head, row = bytearray(event[:at]), event[at:]
        big = head + row * rows
        big[9:13] = struct.pack("<I", len(big))
        big = bytes(big)
        for _ in range(events):
            put(big)
    zstd.stdin.close()
    reader.join()
    if zstd.wait() != 0:
        raise RuntimeError("zstd failed")
    compressed = out[0]
    body = (b"\x01" + lenenc(len(lenenc(len(compressed)))) + lenenc(len(compressed))
            + b"\x02\x01\x00"
            + b"\x03" + lenenc(len(lenenc(uncompressed))) + lenenc(uncompressed)
            + b"\x00" + compressed)
    size = 19 + len(body) + 4
    header = bytearray(frame[:19])
    header[9:13] = struct.pack("<I", size)
    header[13:17] = struct.pack("<I", offset + size)
    event = bytes(header) + body
    event += struct.pack("<I", zlib.crc32(event) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(data[:offset])
        f.write(event)
    return events * rows, uncompressed, len(compressed)
