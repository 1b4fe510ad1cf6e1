"""Times five audit queries on auditlake's SQL endpoint and on DuckDB over the same lake.

Usage: compare.py AUDITLAKE_BINARY LAKE_FOLDER (called by query/benches/duckdb.sh).
"""

import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import duckdb

ROLE = "arn:aws:iam::111122223333:role/mongo-atlas-access"
USER = "arn:aws:iam::111122223333:user/alice"

QUERIES = [
    (
        "who assumed the database role, from where",
        f"""SELECT COALESCE(session_issuer_arn, user_arn) AS principal, source_ip,
       count(*) AS assumptions, min(event_time) AS first_seen, max(event_time) AS last_seen
FROM cloudtrail
WHERE event_source = 'sts.amazonaws.com' AND event_name = 'AssumeRole' AND role_arn = '{ROLE}'
GROUP BY 1, 2 ORDER BY assumptions DESC, principal, source_ip""",
    ),
    (
        "one user's API calls on one day",
        f"""SELECT event_time, event_source, event_name, source_ip, error_code
FROM cloudtrail
WHERE user_arn = '{USER}'
  AND event_time >= '2026-10-03T00:00:00Z' AND event_time < '2026-10-04T00:00:00Z'
ORDER BY event_time, event_name LIMIT 100""",
    ),
    (
        "calls and errors per service per day",
        """SELECT date_trunc('day', event_time) AS day, event_source,
       count(*) AS calls, count(error_code) AS errors
FROM cloudtrail GROUP BY 1, 2 ORDER BY 1, 2""",
    ),
    (
        "failed database logins by user and address",
        """SELECT "user", remote_ip, count(*) AS failures, min(ts) AS first_seen, max(ts) AS last_seen
FROM mongodb_audit
WHERE atype = 'authenticate' AND result <> 0
GROUP BY 1, 2 ORDER BY failures DESC, "user", remote_ip LIMIT 20""",
    ),
    (
        "database sessions per cluster and app",
        """SELECT "cluster", app_name, count(DISTINCT conn_uuid) AS sessions, count(*) AS events
FROM mongodb_audit GROUP BY 1, 2 ORDER BY sessions DESC, "cluster", app_name""",
    ),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(run, repeats=3):
    run()  # warm: file metadata and the page cache, for both engines alike
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


class Auditlake:
    def __init__(self, binary, lake, extra_config=""):
        self.dir = tempfile.mkdtemp()
        empty = os.path.join(self.dir, "empty")
        os.mkdir(empty)
        port = free_port()
        config = os.path.join(self.dir, "bench.toml")
        with open(config, "w") as f:
            f.write(
                f'lake = "{lake}"\n'
                f'state_dir = "{os.path.join(self.dir, "state")}"\n'
                f'[http]\nlisten = "127.0.0.1:{port}"\n'
                f'[sql]\ntimeout = "600s"\nmax_result_rows = 10000000\n'
                f'[[source]]\ntype = "folder"\npath = "{empty}"\n'
                + extra_config
            )
        self.url = f"http://127.0.0.1:{port}/v1/sql"
        self.process = subprocess.Popen(
            [binary, "serve", "--config", config],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "serve.log"), "w"),
        )
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("auditlake serve did not start: " + open(os.path.join(self.dir, "serve.log")).read())

    def query(self, sql):
        request = urllib.request.Request(
            self.url, data=json.dumps({"sql": sql}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            body = json.load(response)
        names = [column["name"] for column in body["columns"]]
        return [[row.get(name) for name in names] for row in body["rows"]]

    def peak_rss_mib(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=30)


class DuckDB:
    def __init__(self, lake):
        self.con = duckdb.connect()
        self.con.execute("SET threads = 2")
        self.con.execute("SET TimeZone = 'UTC'")
        for table in ("cloudtrail", "mongodb_audit"):
            self.con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet("
                f"'{lake}/{table}/*/*/*.parquet', hive_partitioning = true, union_by_name = true)"
            )

    def query(self, sql):
        return [list(row) for row in self.con.execute(sql).fetchall()]


def comparable(rows):
    """First row as text, with times and floats normalised, so the engines' answers compare."""
    if not rows:
        return None
    out = []
    for value in rows[0]:
        text = str(value)
        if hasattr(value, "isoformat"):
            text = value.isoformat().replace("+00:00", "Z")
        text = text.replace("T", " ").replace("Z", "").replace("+00:00", "")
        out.append(text[:19])
    return out


def main():
    binary, lake = sys.argv[1], os.path.abspath(sys.argv[2])
    rows = {}
    for table in ("cloudtrail", "mongodb_audit"):
        rows[table] = duckdb.connect().execute(
            f"SELECT count(*) FROM read_parquet('{lake}/{table}/*/*/*.parquet')"
        ).fetchall()[0][0]
    files = sum(len(fs) for _, _, fs in os.walk(lake))
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(lake) for f in fs)
    print(f"lake: {rows['cloudtrail']:,} cloudtrail + {rows['mongodb_audit']:,} mongodb_audit rows, "
          f"{files} files, {size / 1e6:,.0f} MB")

    ours = Auditlake(binary, lake)
    duck = DuckDB(lake)
    print(f"{'query':<46} {'auditlake best/median':>22} {'duckdb best/median':>20} {'ratio':>6} rows")
    totals = [0.0, 0.0]
    try:
        cpu_before = ours.cpu_seconds()
        for title, sql in QUERIES:
            a_best, a_median, a_rows = timed(lambda: ours.query(sql))
            d_best, d_median, d_rows = timed(lambda: duck.query(sql))
            if len(a_rows) != len(d_rows) or comparable(a_rows) != comparable(d_rows):
                raise SystemExit(
                    f"{title}: the engines disagree:\n auditlake {len(a_rows)} rows, first "
                    f"{comparable(a_rows)}\n duckdb {len(d_rows)} rows, first {comparable(d_rows)}"
                )
            totals[0] += a_median
            totals[1] += d_median
            print(f"{title:<46} {a_best * 1000:>9.0f} / {a_median * 1000:>6.0f} ms "
                  f"{d_best * 1000:>8.0f} / {d_median * 1000:>6.0f} ms "
                  f"{d_median / a_median:>6.2f} {len(a_rows)}")
        cpu = ours.cpu_seconds() - cpu_before
        print(f"{'total of medians':<46} {totals[0] * 1000:>18.0f} ms {totals[1] * 1000:>17.0f} ms "
              f"{totals[1] / totals[0]:>6.2f}")
        print(f"auditlake serve: {cpu:.1f} CPU-s for the 20 runs, peak RSS {ours.peak_rss_mib():.0f} MiB; "
              f"duckdb (in this Python process) peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        print("ratio = duckdb median / auditlake median (above 1: auditlake is faster)")
    finally:
        ours.close()


if __name__ == "__main__":
    main()
