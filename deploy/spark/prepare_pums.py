#!/usr/bin/env python3
"""PySpark twin of `dpctl data prepare`: PUMS person CSVs in, dpfleet shards out.

For data that outgrows one machine. It must produce exactly what the embedded
C++ pipeline (common/pums/prepare.cc over common/pums/dataset.cc) produces from the same
files and options: the same rows kept and dropped for the same reasons, the
same labels, encoding, train/eval split and shard assignment, byte-identical
shard files (so their SHA-256s match) and a byte-identical manifest.json.
tests/integration/spark_parity_test.cc checks that.

The schema is not repeated here: the job reads the JSON that
`dpctl data schema -o json` prints (common/pums/prepare.cc: SchemaJson), so the
public data dictionary lives in one place. What *is* repeated, and must be
kept in step with the C++ code, is logic: the CSV field splitting and integer
parsing of common/pums/csv.cc, the checks and drop reasons of ParseBlock in
common/pums/dataset.cc, the de-duplication of persons and the same-input
check of EncodeStreaming, the record-key / split / partition hashes (RecordKey,
InEvalSplit, PartitionOf), the shard format of common/pums/shards.h and the
canonical JSON text of the manifest.

Privacy rule (DESIGN.md, "Data path"): nothing may be computed from the
data that shapes the output; vocabularies and ranges come from the schema.

Usage (see deploy/spark/README.md):
  spark-submit --master local[2] deploy/spark/prepare_pums.py \
      --schema schema.json --input a.csv [b.csv ...] --task employment \
      --shards 4 --out DIR [--features AGEP,SCHL] [--split-seed 0] \
      [--eval-fraction 0.2]
"""

import argparse
import hashlib
import json
import os
import struct
import sys
from array import array

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
ASCII_WHITESPACE = " \t\n\v\f\r"  # absl::StripAsciiWhitespace's set
BLANK_SUFFIX = "=blank(not applicable)"
MANIFEST_FILE = "manifest.json"
EVAL_FILE = "eval.bin"
MAX_SHARDS = 1024
DUPLICATE_REASON = "duplicate"  # kDuplicateReason in common/pums/dataset.h

# ---------------------------------------------------------------------------
# Hashes (common/pums/dataset.cc). Python ints are unbounded, so every sum and
# product is cut back to 64 bits by hand.


def mix64(z):
    """splitmix64's finaliser on a 64-bit value."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def record_key(serialno, sporder):
    """RecordKey: SERIALNO bytes in little-endian 8-byte words, then SPORDER."""
    h = mix64(0x243F6A8885A308D3 ^ len(serialno))
    for i in range(0, len(serialno), 8):
        word = int.from_bytes(serialno[i:i + 8], "little")
        h = mix64((h + GOLDEN + word) & MASK64)
    return mix64((h + GOLDEN + sporder * 0xFF51AFD7ED558CCD) & MASK64)


def in_eval_split(key, split_seed, eval_fraction):
    h = mix64(key ^ mix64((split_seed + 0x632BE59BD9B4E019) & MASK64))
    # 53 high bits scaled to [0, 1): exact in a double, as in C++.
    return (h >> 11) * 2.0 ** -53 < eval_fraction


def fingerprint_term(key):
    """One record's term of an input's fingerprint (InputFingerprint)."""
    return mix64(key ^ 0x2545F4914F6CDD1D)


def partition_of(key, world_size):
    if world_size <= 1:
        return 0
    h = mix64((key + 0xD1B54A32D192ED03) & MASK64)
    return ((h >> 32) * world_size) >> 32


# ---------------------------------------------------------------------------
# CSV primitives (common/pums/csv.cc).


def split_csv_line(line):
    """SplitCsvLine: plain split without quotes; RFC 4180 quotes otherwise,
    keeping anything between a closing quote and the next comma verbatim."""
    if '"' not in line:
        return line.split(",")
    fields = []
    n = len(line)
    p = 0
    while True:
        if p < n and line[p] == '"':
            buf = []
            p += 1
            while p < n:
                c = line[p]
                if c == '"':
                    if p + 1 < n and line[p + 1] == '"':
                        buf.append('"')
                        p += 2
                        continue
                    p += 1  # closing quote
                    break
                buf.append(c)
                p += 1
            while p < n and line[p] != ",":
                buf.append(line[p])
                p += 1
            fields.append("".join(buf))
        else:
            comma = line.find(",", p)
            stop = n if comma < 0 else comma
            fields.append(line[p:stop])
            p = stop
        if p >= n:
            return fields
        p += 1  # the comma
        if p == n:
            fields.append("")  # trailing empty field
            return fields


OK, BLANK, BAD = 0, 1, 2


def parse_csv_int(field):
    """ParseCsvInt: optional sign, 1..18 ASCII digits, spaces around ignored.
    Returns (status, value)."""
    if field.isdigit() and field.isascii() and len(field) <= 18:
        return OK, int(field)  # the common case
    b, e = 0, len(field)
    while b < e and field[b] == " ":
        b += 1
    while e > b and field[e - 1] == " ":
        e -= 1
    if b == e:
        return BLANK, 0
    negative = False
    if field[b] in "+-":
        negative = field[b] == "-"
        b += 1
    digits = field[b:e]
    if not digits or len(digits) > 18 or not (digits.isascii() and digits.isdigit()):
        return BAD, 0
    value = int(digits)
    return OK, -value if negative else value


_ASCII_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}


def ascii_upper(s):
    return s.translate(_ASCII_UPPER)


# ---------------------------------------------------------------------------
# Schema and encoding plan (BuildPlan / MapHeader in common/pums/dataset.cc).


class Schema:
    def __init__(self, doc):
        if doc.get("schema") != "dpfleet-pums-person":
            raise ValueError("not a dpfleet PUMS schema (field 'schema')")
        self.doc = doc
        self.version = doc["schema_version"]
        self.label_variable = doc["label_variable"]
        self.default_features = list(doc["default_features"])
        self.variables = doc["variables"]
        self.by_name = {}
        for v in self.variables:
            for name in [v["name"]] + list(v["aliases"]):
                self.by_name[name] = v

    def find(self, name):
        return self.by_name.get(ascii_upper(name.strip(ASCII_WHITESPACE)))

    def canonical_feature(self, raw):
        v = self.find(raw)
        if v is None:
            known = ", ".join(x["name"] for x in self.variables if x["feature_use"] == "allowed")
            raise ValueError("unknown PUMS feature '%s'; known: %s" % (raw, known))
        if v["feature_use"] != "allowed":
            raise ValueError("PUMS variable '%s' cannot be a feature (%s)" % (v["name"], v["feature_use"]))
        return v


class Reasons:
    """Drop reasons, named and ordered as in common/pums/dataset.cc."""

    def __init__(self):
        self.names = []

    def add(self, name):
        if name not in self.names:
            self.names.append(name)
        return self.names.index(name)

    def add_variable(self, var):
        return (self.add(var + " not numeric"), self.add(var + " out of range"),
                self.add(var + " missing"))


def build_plan(schema, task, feature_names, split_seed, eval_fraction):
    """Everything the per-row encoder needs, as plain picklable data."""
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError("--eval-fraction: %r is outside [0, 1]" % eval_fraction)
    names = feature_names or schema.default_features
    features, columns, seen = [], [], set()
    dim = 0
    for raw in names:
        var = schema.canonical_feature(raw)
        if var["name"] in seen:
            raise ValueError("feature '%s' listed twice" % raw)
        seen.add(var["name"])
        blank_ok = var["blank_meaning"] != ""
        f = {"name": var["name"], "offset": dim, "numeric": var["kind"] == "numeric",
             "min": var["min_value"], "max": var["max_value"], "blank_slot": -1, "slots": {}}
        if f["numeric"]:
            # Scaled to [0, 1] by the dictionary range, plus a "not
            # applicable" indicator when the dictionary allows a blank.
            columns.append(var["name"])
            width = 1
            if blank_ok:
                f["blank_slot"] = 1
                width = 2
                columns.append(var["name"] + BLANK_SUFFIX)
        else:
            for i, code in enumerate(var["codes"]):
                f["slots"][code] = i
                columns.append("%s=%d" % (var["name"], code))
            width = len(var["codes"])
            if blank_ok:
                f["blank_slot"] = width
                width += 1
                columns.append(var["name"] + BLANK_SUFFIX)
        dim += width
        features.append(f)
    reasons = Reasons()
    field_count = reasons.add("bad field count")
    serial = reasons.add_variable("SERIALNO")
    sporder = reasons.add_variable("SPORDER")
    esr = reasons.add_variable(schema.label_variable)
    universe_blank = reasons.add("outside task universe (ESR blank)")
    universe_nilf = reasons.add("outside task universe (ESR=6 not in labor force)")
    for f in features:
        f["reasons"] = reasons.add_variable(f["name"])
    sporder_var = schema.find("SPORDER")
    esr_var = schema.find(schema.label_variable)
    return {
        "task": task, "split_seed": split_seed, "eval_fraction": eval_fraction,
        "features": features, "columns": columns, "dim": dim, "reasons": reasons.names,
        "r_field_count": field_count, "r_serial": serial, "r_sporder": sporder, "r_esr": esr,
        "r_universe_blank": universe_blank, "r_universe_nilf": universe_nilf,
        "sporder_range": (sporder_var["min_value"], sporder_var["max_value"]),
        "esr_codes": frozenset(esr_var["codes"]),
        "label_variable": schema.label_variable,
    }


def map_header(schema, plan, path, header):
    """Column index of every variable the plan reads; errors as in MapHeader."""
    if header.startswith("\ufeff"):
        header = header[1:]
    fields = split_csv_line(header)
    columns = [schema.find(f) for f in fields]

    def find(var_name):
        var = schema.find(var_name)
        found = -1
        for i, v in enumerate(columns):
            if v is var:
                if found >= 0:
                    raise ValueError("file '%s': header has column '%s' (or an alias) twice"
                                     % (path, var["name"]))
                found = i
        if found < 0:
            alias = " (or %s)" % var["aliases"][0] if var["aliases"] else ""
            raise ValueError("file '%s': header lacks required column '%s'%s"
                             % (path, var["name"], alias))
        return found

    return {
        "num_fields": len(fields),
        "serialno": find("SERIALNO"),
        "sporder": find("SPORDER"),
        "esr": find(plan["label_variable"]),
        "features": [find(f["name"]) for f in plan["features"]],
    }


ONE_F32 = struct.pack("<f", 1.0)


def make_row_encoder(plan, layout):
    """Returns encode(line) -> int drop reason, or (label, key, x bytes)."""
    num_fields = layout["num_fields"]
    i_serial, i_sporder, i_esr = layout["serialno"], layout["sporder"], layout["esr"]
    r_field_count = plan["r_field_count"]
    r_serial_missing = plan["r_serial"][2]
    sp_bad, sp_range, sp_missing = plan["r_sporder"]
    esr_bad, esr_range, _ = plan["r_esr"]
    r_blank, r_nilf = plan["r_universe_blank"], plan["r_universe_nilf"]
    sp_lo, sp_hi = plan["sporder_range"]
    esr_codes = plan["esr_codes"]
    employment = plan["task"] == "employment"
    dim4 = plan["dim"] * 4
    # Per feature: (column, numeric, min, span, byte offset, blank byte
    # offset or -1, slot byte offsets by code, reasons).
    feats = []
    for f, col in zip(plan["features"], layout["features"]):
        off = f["offset"] * 4
        blank = off + 4 * f["blank_slot"] if f["blank_slot"] >= 0 else -1
        slots = {code: off + 4 * s for code, s in f["slots"].items()}
        feats.append((col, f["numeric"], f["min"], f["max"], off, blank, slots, f["reasons"]))
    pack_f32 = struct.Struct("<f").pack_into

    def encode(line):
        fields = split_csv_line(line)
        if len(fields) != num_fields:
            return r_field_count
        serialno = fields[i_serial].strip(ASCII_WHITESPACE)
        if not serialno:
            return r_serial_missing
        st, sporder = parse_csv_int(fields[i_sporder])
        if st != OK:
            return sp_missing if st == BLANK else sp_bad
        if sporder < sp_lo or sporder > sp_hi:
            return sp_range
        st, esr = parse_csv_int(fields[i_esr])
        if st == BAD:
            return esr_bad
        if st == BLANK:
            return r_blank
        if esr not in esr_codes:
            return esr_range
        if employment:
            label = 1.0 if esr in (1, 2, 4, 5) else 0.0
        else:
            if esr == 6:
                return r_nilf
            label = 1.0 if esr == 3 else 0.0
        x = bytearray(dim4)
        for col, numeric, lo, hi, off, blank, slots, reasons in feats:
            st, v = parse_csv_int(fields[col])
            if st == BAD:
                return reasons[0]
            if st == BLANK:
                if blank < 0:
                    return reasons[2]
                x[blank:blank + 4] = ONE_F32
            elif numeric:
                if v < lo or v > hi:
                    return reasons[1]
                # Same double division as C++, then rounded to float32.
                pack_f32(x, off, (v - lo) / (hi - lo))
            else:
                at = slots.get(v)
                if at is None:
                    return reasons[1]
                x[at:at + 4] = ONE_F32
        key = record_key(serialno.encode("utf-8"), sporder)
        return (label, key, bytes(x))

    return encode


# ---------------------------------------------------------------------------
# Shard files (common/pums/shards.h) and the canonical manifest text.

# A format string, not a struct.Struct: functions of this script are pickled
# to the executors together with the globals they use, and Struct objects do
# not pickle.
HEADER_FORMAT = "<8sIIQQIII20x"  # 64 bytes


def shard_header(rows, dim, index, count, split):
    return struct.pack(HEADER_FORMAT, b"DPFSHARD", 1, 1, rows, dim, index, count, split)


def train_shard_name(index, count):
    return "train-%05d-of-%05d.bin" % (index, count)


def canonical_double(x):
    """Shortest %.{p}g that reads back as the same double (CanonicalDouble)."""
    for p in range(1, 18):
        s = "%.*g" % (p, x)
        if float(s) == x:
            return s
    return "%.17g" % x


def _json_string(s):
    out = ['"']
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20:
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _json_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return canonical_double(v)
    if isinstance(v, str):
        return _json_string(v)
    if v is None:
        return "null"
    raise TypeError("not a JSON scalar: %r" % (v,))


def canonical_json(v, indent=0):
    """CanonicalJsonText of common/pums/shards.cc, without the final newline."""
    pad = "  " * (indent + 1)
    close = "  " * indent
    if isinstance(v, dict):
        if not v:
            return "{}"
        items = ["%s%s: %s" % (pad, _json_string(k), canonical_json(x, indent + 1))
                 for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + close + "}"
    if isinstance(v, list):
        if not v:
            return "[]"
        if all(not isinstance(x, (dict, list)) for x in v):
            return "[" + ", ".join(_json_scalar(x) for x in v) + "]"
        return "[\n" + ",\n".join(pad + canonical_json(x, indent + 1) for x in v) + "\n" + close + "]"
    return _json_scalar(v)


def label_rule(task):
    if task == "employment":
        return ("1 if ESR in {1,2,4,5} (employed, civilian or Armed Forces), 0 if ESR in {3,6}; "
                "rows with blank ESR (under 16) are dropped")
    return ("1 if ESR == 3 (unemployed), 0 if ESR in {1,2,4,5}; rows with blank ESR (under 16) "
            "or ESR 6 (not in labor force) are dropped")


def is_train_shard_name(name):
    base = name[:-8] if name.endswith(".partial") else name
    return (len(base) == 24 and base.startswith("train-") and base.endswith(".bin")
            and base[11:15] == "-of-" and base[6:11].isdigit() and base[15:20].isdigit())


# ---------------------------------------------------------------------------
# The Spark job.


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schema", required=True, help="output of `dpctl data schema -o json`")
    p.add_argument("--input", required=True, nargs="+", action="extend",
                   help="PUMS person CSV files (.csv or .csv.gz), in order")
    p.add_argument("--task", required=True, choices=["employment", "unemployment"])
    p.add_argument("--features", default="", help="comma-separated PUMS variables")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--eval-fraction", type=float, default=0.2)
    p.add_argument("--shards", type=int, required=True)
    p.add_argument("--master", default=None,
                   help="Spark master when run with plain python (spark-submit passes its own)")
    p.add_argument("--out", required=True,
                   help="output directory; on a cluster, a filesystem every executor mounts here")
    args = p.parse_args(argv)
    if not 1 <= args.shards <= MAX_SHARDS:
        p.error("--shards: %d is outside [1, %d]" % (args.shards, MAX_SHARDS))
    if not 0 <= args.split_seed <= MASK64:
        p.error("--split-seed: %d is not a 64-bit unsigned integer" % args.split_seed)
    args.features = [f.strip(ASCII_WHITESPACE) for f in args.features.split(",")] if args.features else []
    if any(not f for f in args.features):
        p.error("--features: empty name in %r" % ",".join(args.features))
    return args


def encode_partition(file_index, plan, layout, shards):
    """mapPartitions body: (byte offset, line) -> keyed rows + one stats record.

    Kept rows are keyed (bucket, file, offset): bucket is the train shard or
    `shards` for eval, and (file, offset) restores input order after the
    shuffle. Both copies of a duplicated person share a bucket (the bucket is
    a function of the key), so write_partition de-duplicates each bucket on
    its own. Drop counts and the input's fingerprint (records and key sum of
    the usable rows, before de-duplication) travel as one record per
    partition to bucket shards + 1, so each is exact even when a task is
    retried."""
    seed, frac = plan["split_seed"], plan["eval_fraction"]
    n_reasons = len(plan["reasons"])
    stats_bucket = shards + 1

    def run(records):
        # Built on the executor: the encoder holds objects that do not pickle.
        encode = make_row_encoder(plan, layout)
        rows_read = 0
        drops = [0] * n_reasons
        usable, key_sum = 0, 0
        first = None
        for offset, line in records:
            if first is None:
                first = offset
            if offset == 0:
                continue  # the header
            if line.endswith("\r"):
                line = line[:-1]
            if not line:
                continue  # blank lines are not records
            rows_read += 1
            r = encode(line)
            if isinstance(r, int):
                drops[r] += 1
                continue
            label, key, x = r
            usable += 1
            key_sum = (key_sum + fingerprint_term(key)) & MASK64
            bucket = shards if in_eval_split(key, seed, frac) else partition_of(key, shards)
            yield (bucket, file_index, offset), (label, key, x)
        if first is not None:
            yield (stats_bucket, file_index, first), (rows_read, drops, usable, key_sum)

    return run


def write_partition(out_dir, shards, dim):
    """mapPartitionsWithIndex body: writes one shard to <name>.partial and
    returns its description and how many duplicate persons it dropped (the
    first occurrence in input order is kept, as in the C++ encoder); the
    stats bucket returns the summed counts and per-input fingerprints."""

    def run(index, records):
        if index == shards + 1:
            per_file = {}
            drops = None
            for (_, file_index, _), (rows_read, d, n, key_sum) in records:
                read0, n0, sum0 = per_file.get(file_index, (0, 0, 0))
                per_file[file_index] = (read0 + rows_read, n0 + n, (sum0 + key_sum) & MASK64)
                drops = d if drops is None else [a + b for a, b in zip(drops, d)]
            yield ("stats", per_file, drops)
            return
        is_eval = index == shards
        name = EVAL_FILE if is_eval else train_shard_name(index, shards)
        partial = os.path.join(out_dir, name + ".partial")
        labels = array("f")
        keys = array("Q")
        seen = set()
        duplicates = 0
        with open(partial, "wb", buffering=1 << 20) as f:
            f.write(bytes(64))  # header written last, once rows are known
            for _, (label, key, x) in records:
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                f.write(x)
                labels.append(label)
                keys.append(key)
            rows = len(labels)
            if sys.byteorder != "little":
                labels.byteswap()
                keys.byteswap()
            f.write(labels.tobytes())
            f.write(bytes((8 - (64 + 4 * rows * (dim + 1)) % 8) % 8))
            f.write(keys.tobytes())
            f.seek(0)
            f.write(shard_header(rows, dim, 0 if is_eval else index, 1 if is_eval else shards,
                                 1 if is_eval else 0))
        digest = hashlib.sha256()
        with open(partial, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        info = {"file": name, "rows": rows, "positives": int(sum(1 for y in labels if y == 1.0)),
                "bytes": os.path.getsize(partial), "sha256": digest.hexdigest()}
        if not is_eval:
            info = dict([("index", index)] + list(info.items()))
        yield ("eval" if is_eval else "train", index, info, duplicates)

    return run


def main(argv):
    args = parse_args(argv)
    with open(args.schema, "rb") as f:
        schema_bytes = f.read()
    schema = Schema(json.loads(schema_bytes))
    try:
        plan = build_plan(schema, args.task, args.features, args.split_seed, args.eval_fraction)
    except ValueError as e:
        print("prepare_pums: %s" % e, file=sys.stderr)
        return 2

    from pyspark.sql import SparkSession  # imported late: --help works without Spark

    builder = SparkSession.builder.appName("dpfleet-prepare-pums")
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    sc = spark.sparkContext
    sc.setLogLevel("WARN")
    out_dir = args.out
    os.makedirs(out_dir, exist_ok=True)
    # Split on "\n" only (Hadoop's default also splits on a lone "\r"); a
    # trailing "\r" is removed per line, as the C++ reader does.
    hadoop_conf = {"textinputformat.record.delimiter": "\n"}
    shards = args.shards
    parts = []
    try:
        for file_index, path in enumerate(args.input):
            lines = sc.newAPIHadoopFile(
                path, "org.apache.hadoop.mapreduce.lib.input.TextInputFormat",
                "org.apache.hadoop.io.LongWritable", "org.apache.hadoop.io.Text", conf=hadoop_conf)
            head = lines.take(1)
            header = head[0][1] if head else ""
            if header.endswith("\r"):
                header = header[:-1]
            if not header.strip(ASCII_WHITESPACE):
                raise ValueError("file '%s' is empty (no header)" % path)
            layout = map_header(schema, plan, path, header)
            parts.append(lines.mapPartitions(encode_partition(file_index, plan, layout, shards)))
    except ValueError as e:
        print("prepare_pums: %s" % e, file=sys.stderr)
        spark.stop()
        return 2

    keyed = sc.union(parts)
    ordered = keyed.repartitionAndSortWithinPartitions(
        numPartitions=shards + 2, partitionFunc=lambda k: k[0])
    results = ordered.mapPartitionsWithIndex(
        write_partition(out_dir, shards, plan["dim"])).collect()
    spark.stop()

    train = sorted((r[2] for r in results if r[0] == "train"), key=lambda s: s["index"])
    (eval_info,) = [r[2] for r in results if r[0] == "eval"]
    stats = [r for r in results if r[0] == "stats"]
    per_file = stats[0][1] if stats else {}
    drops = (stats[0][2] if stats and stats[0][2] else [0] * len(plan["reasons"]))
    duplicates = sum(r[3] for r in results if r[0] in ("train", "eval"))
    rows_read = sum(f[0] for f in per_file.values())
    rows_train = sum(s["rows"] for s in train)
    rows_eval = eval_info["rows"]
    # Reasons with a count, sorted by name as std::map sorts them.
    counted = [(plan["reasons"][i], n) for i, n in enumerate(drops) if n > 0]
    if duplicates > 0:
        counted.append((DUPLICATE_REASON, duplicates))
    dropped_by_reason = dict(sorted(counted))
    partials = [os.path.join(out_dir, s["file"] + ".partial") for s in train + [eval_info]]
    # The same data given twice is refused, as by the C++ encoder (which
    # checks after each input, in input order).
    fingerprints = [per_file.get(i, (0, 0, 0))[1:] for i in range(len(args.input))]
    for f in range(len(args.input)):
        for g in range(f):
            if fingerprints[f][0] > 0 and fingerprints[f] == fingerprints[g]:
                for p in partials:
                    os.remove(p)
                print("prepare_pums: input %d ('%s') holds exactly the same %d person records "
                      "(SERIALNO, SPORDER) as input %d ('%s'): the same data given twice; give each "
                      "file once" % (f + 1, args.input[f], fingerprints[f][0], g + 1, args.input[g]),
                      file=sys.stderr)
                return 2
    if rows_train + rows_eval == 0:
        for p in partials:
            os.remove(p)
        why = ", ".join("%s: %d" % kv for kv in dropped_by_reason.items())
        print("prepare_pums: no usable rows in %s for task %s (%d rows read%s)"
              % (", ".join(args.input), args.task, rows_read, "; dropped: " + why if why else ""),
              file=sys.stderr)
        return 2

    positives_train = sum(s["positives"] for s in train)
    positives_eval = eval_info["positives"]
    manifest = {
        "format": "dpfleet-pums-shards",
        "format_version": 1,
        "schema_version": schema.version,
        "schema_sha256": hashlib.sha256(schema_bytes).hexdigest(),
        "task": args.task,
        "label": label_rule(args.task),
        "features": [f["name"] for f in plan["features"]],
        "columns": plan["columns"],
        "dim": plan["dim"],
        "dtype": "float32",
        "split_seed": args.split_seed,
        "eval_fraction": float(args.eval_fraction),
        "split_rule": "eval if InEvalSplit(RecordKey(SERIALNO, SPORDER), split_seed, "
                      "eval_fraction), else train",
        "shard_rule": "train rows go to train shard PartitionOf(RecordKey(SERIALNO, SPORDER), "
                      "shards), eval rows to eval.bin; rows keep input order (files as given, "
                      "rows in file order)",
        "inputs": [{"file": os.path.basename(p), "rows_read": per_file.get(i, (0, 0, 0))[0]}
                   for i, p in enumerate(args.input)],
        "rows_read": rows_read,
        "rows_dropped": dropped_by_reason,
        "rows_train": rows_train,
        "rows_eval": rows_eval,
        "positives_train": positives_train,
        "positives_eval": positives_eval,
        "positive_rate_train": positives_train / rows_train if rows_train else 0.0,
        "positive_rate_eval": positives_eval / rows_eval if rows_eval else 0.0,
        "shards": shards,
        "train_shards": train,
        "eval_shard": eval_info,
    }
    # Publish as the C++ side does: shards, then stale files out, then the
    # manifest that lists the shards.
    for p in partials:
        os.replace(p, p[:-len(".partial")])
    listed = {s["file"] for s in train}
    for name in os.listdir(out_dir):
        if (is_train_shard_name(name) and name not in listed) or name in (
                EVAL_FILE + ".partial", MANIFEST_FILE + ".partial"):
            os.remove(os.path.join(out_dir, name))
    tmp = os.path.join(out_dir, MANIFEST_FILE + ".partial")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(canonical_json(manifest) + "\n")
    os.replace(tmp, os.path.join(out_dir, MANIFEST_FILE))
    dropped = sum(drops)
    print("prepared %s: %d rows read, %d train, %d eval, %d dropped"
          % (out_dir, rows_read, rows_train, rows_eval, dropped))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
