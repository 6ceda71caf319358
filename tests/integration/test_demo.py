"""The README's first command runs scripts/demo.sql (set -e, ON_ERROR_STOP): it must run to its
end on a fresh database, and print the reports it promises. (A statement of it that failed went
unnoticed through two releases before this test.)"""
import subprocess
import uuid

from conftest import ROOT, admin, port


def test_the_demo_script_runs_to_its_end_and_prints_its_reports():
    db = "it_demo_" + uuid.uuid4().hex[:8]
    with admin() as a:
        a.execute(f"CREATE DATABASE {db}")
    try:
        out = subprocess.run(["/usr/bin/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port()),
                              "-U", "postgres", "-d", db, "-f", str(ROOT / "scripts" / "demo.sql")],
                             capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert out.returncode == 0, out.stderr[-3000:]
        text = out.stdout
        for shown in ("Spend (llm_cost.spend_summary)", "What prompt caching saved this month", "What a request costs this month",
                      "budget user_monthly_cap: 5.00 USD per group of llm_cost.usage_monthly", "projected this month", "allowed"):
            assert shown in text, shown
        assert "unpriced" in text  # the unknown model is shown as unpriced, never $0.00
    finally:
        with admin() as a:
            a.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
