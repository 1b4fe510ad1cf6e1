"""Times the access chain on auditlake's SQL endpoint (called by query/benches/access_chain.sh).

Usage: access_chain.py AUDITLAKE_BINARY LAKE_FOLDER DAYS
"""

import datetime
import sys

from compare import Auditlake, timed

ROLE = "arn:aws:iam::111122223333:role/mongo-atlas-access"
WATCH = f"""
[[detect.unexpected_role_assumer]]
roles = ["{ROLE}"]
expected = ["arn:aws:iam::111122223333:role/service-role/orders-api-lambda"]
"""


def main():
    binary, lake, days = sys.argv[1], sys.argv[2], int(sys.argv[3])
    start = datetime.datetime(2026, 10, 1, tzinfo=datetime.timezone.utc)
    since, until = (t.strftime("%Y-%m-%dT%H:%M:%SZ")
                    for t in (start, start + datetime.timedelta(days=days)))
    month = (f"COALESCE(db_authenticated_at, assumed_at) >= '{since}' "
             f"AND COALESCE(db_authenticated_at, assumed_at) < '{until}'")
    queries = [
        ("one role's access chain over the period",
         f"SELECT * FROM access_chain WHERE role_arn = '{ROLE}' AND {month} "
         "ORDER BY COALESCE(db_authenticated_at, assumed_at), db_session_id"),
        ("its sessions nothing explains",
         f"SELECT db_authenticated_at, db_host, db_session_id, db_remote_ip, access_key_id "
         f"FROM access_chain WHERE role_arn = '{ROLE}' AND link = 'none' "
         "AND db_session_id IS NOT NULL ORDER BY 1"),
        ("links per caller, whole chain",
         "SELECT caller_principal, link, count(*) FROM access_chain GROUP BY 1, 2 ORDER BY 1, 2"),
    ]
    ours = Auditlake(binary, lake, WATCH)
    try:
        logins = ours.query(
            "SELECT count(*) FROM mongodb_audit WHERE atype = 'authenticate' "
            "AND mechanism = 'MONGODB-AWS' AND result = 0")[0][0]
        print(f"MONGODB-AWS logins in the lake: {logins:,}")
        print(f"{'query':<44} {'best/median':>18} rows")
        results = {}
        for title, sql in queries:
            best, median, rows = timed(lambda: ours.query(sql))
            results[title] = rows
            print(f"{title:<44} {best * 1000:>7.0f} / {median * 1000:>6.0f} ms {len(rows):,}")
        sessions = sum(1 for row in results[queries[0][0]] if row[13] is not None)
        if sessions != logins:
            raise SystemExit(f"the chain holds {sessions} sessions, the lake {logins} logins")
        unexplained = len(results[queries[1][0]])
        if unexplained != days:
            raise SystemExit(f"{unexplained} unexplained sessions, one a day expected")
        print(f"auditlake serve: peak RSS {ours.peak_rss_mib():.0f} MiB")
    finally:
        ours.close()


if __name__ == "__main__":
    main()
