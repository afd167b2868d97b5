"""Runs docs/consumers.md's tested SQL with DuckDB over a local copy of the delivered S3 objects,
for tests/it/firehose.rs (the query logic, not Athena itself).

  consumers.py DOCS ROOT DATABASE.TABLE ...
      ROOT is a directory laid out as the bucket (ROOT/cdc/db=.../tbl=.../dt=.../object).
      Reads the blocks marked <!-- test: athena-ddl --> and <!-- test: current-state -->,
      checks every object's path against the DDL's storage.location.template and partition
      projection, creates the table as a DuckDB view over the objects with the DDL's columns,
      and runs the current-state query for each DATABASE.TABLE (in place of shop.orders).
      Prints {"rows": N, "per_table": {"db.tbl": N}, "state": {"db.tbl": {"id": "row json"}}}.

Needs duckdb (installed in .emu/lint by scripts/setup --tests).
"""

import datetime
import json
import os
import re
import sys

import duckdb

HIVE_TO_DUCKDB = {"string": "VARCHAR", "bigint": "BIGINT", "boolean": "BOOLEAN"}


def block(docs, name):
    """The ```sql block right after <!-- test: NAME -->."""
    marker = f"<!-- test: {name} -->"
    start = docs.index(marker) + len(marker)
    body = docs[start:].lstrip("\n")
    if not body.startswith("```sql\n"):
        raise SystemExit(f"{marker} is not followed by a ```sql block")
    return body[len("```sql\n"):body.index("\n```")]


def columns(text):
    """[(name, hive type)] of a column list `a string, `b` bigint, ...`."""
    out = []
    for item in text.split(","):
        name, kind = item.split()
        out.append((name.strip("`"), kind.lower()))
    return out


def parse_ddl(ddl):
    data = re.search(r"CREATE EXTERNAL TABLE (\w+) \((.*?)\)\s*PARTITIONED BY", ddl, re.S)
    partitions = re.search(r"PARTITIONED BY \((.*?)\)", ddl, re.S)
    location = re.search(r"LOCATION '([^']+)'", ddl).group(1)
    properties = dict(re.findall(r"'([^']+)'\s*=\s*'([^']*)'", ddl))
    return data.group(1), columns(data.group(2)), columns(partitions.group(1)), location, properties


def java_to_strptime(fmt):
    return fmt.replace("yyyy", "%Y").replace("MM", "%m").replace("dd", "%d")


def check_layout(root, location, partitions, properties):
    """Every object sits where the projection's template says, with valid partition values."""
    assert properties.get("projection.enabled") == "true", "partition projection is off"
    bucket_root = re.match(r"s3://[^/]+/", location).group(0)
    template = properties["storage.location.template"]
    assert template.startswith(location), "the template lies under LOCATION"
    pattern = re.escape(template[len(bucket_root):])
    for name, _ in partitions:
        pattern = pattern.replace(re.escape("${" + name + "}"), f"(?P<{name}>[^/]*)")
    pattern = re.compile(pattern + r"[^/]+$")
    low, high = properties[f"projection.dt.range"].split(",")
    fmt = java_to_strptime(properties["projection.dt.format"])
    low = datetime.datetime.strptime(low, fmt).date()
    objects = 0
    for directory, _, files in os.walk(os.path.join(root, location[len(bucket_root):])):
        for file in files:
            path = os.path.relpath(os.path.join(directory, file), root)
            match = pattern.fullmatch(path)
            assert match, f"{path} does not match {template}"
            for name, _ in partitions:
                kind = properties[f"projection.{name}.type"]
                value = match.group(name)
                if kind == "date":
                    day = datetime.datetime.strptime(value, fmt).date()
                    assert high == "NOW" and low <= day <= datetime.date.today(), path
                else:
                    assert kind == "injected" and value, path
            objects += 1
    assert objects, "no objects under LOCATION"
    return bucket_root


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    docs_path, root, tables = argv[0], argv[1], argv[2:]
    docs = open(docs_path).read()
    name, data, partitions, location, properties = parse_ddl(block(docs, "athena-ddl"))
    bucket_root = check_layout(root, location, partitions, properties)
    con = duckdb.connect()
    types = ", ".join(f"'{c}': '{HIVE_TO_DUCKDB[t]}'" for c, t in data)
    hive = ", ".join(f"'{c}': '{HIVE_TO_DUCKDB[t]}'" for c, t in partitions)
    files = os.path.join(root, location[len(bucket_root):], "**", "*")
    con.execute(
        f"CREATE VIEW {name} AS SELECT * FROM read_json('{files}', "
        f"format = 'newline_delimited', columns = {{{types}}}, "
        f"hive_partitioning = true, hive_types = {{{hive}}})")
    # Athena's (Trino's) name for DuckDB's function.
    con.execute("CREATE MACRO json_extract_scalar(j, p) AS json_extract_string(j, p)")
    result = {"rows": con.execute(f"SELECT count(*) FROM {name}").fetchone()[0], "per_table": {},
              "state": {}}
    for db, tbl, n in con.execute(f"SELECT db, tbl, count(*) FROM {name} GROUP BY ALL").fetchall():
        result["per_table"][f"{db}.{tbl}"] = n
    query = block(docs, "current-state")
    assert query.count("db = 'shop' AND tbl = 'orders'") == 1, "the query's table changed"
    for table in tables:
        db, tbl = table.split(".", 1)
        sql = query.replace("db = 'shop' AND tbl = 'orders'", f"db = '{db}' AND tbl = '{tbl}'")
        result["state"][table] = {key: state for key, state in con.execute(sql).fetchall()}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
