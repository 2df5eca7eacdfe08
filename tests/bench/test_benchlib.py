"""The benches' shared reading of wrk's output and their verdicts: a
figure misread or a bar judged the wrong way round would make every bench
lie. No stack needed.

Run: python3 -m unittest discover -s tests/bench -p 'test_*.py'
"""

import io
import json
import os
import tempfile
import unittest
from contextlib import redirect_stdout
from unittest import mock

import benchlib as b

WRK_OUTPUT = """Running 8s test @ https://127.0.0.1:4443/v1/me
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.21ms    2.10ms   1.20s    91.00%
    Req/Sec     7.80k   600.00    9.00k    70.00%
  Latency Distribution
     50%    3.90ms
     75%    5.00ms
     90%    6.10ms
     99%   12.34ms
  124000 requests in 8.00s, 60.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  15500.25
Transfer/sec:      7.50MB
"""


class ParseWrk(unittest.TestCase):
    def test_every_figure_is_read_in_its_unit(self):
        r = b.parse_wrk(WRK_OUTPUT)
        self.assertEqual(r["requests_per_second"], 15500.25)
        self.assertEqual(r["requests"], 124000)
        self.assertEqual(r["p50_ms"], 3.9)
        self.assertEqual(r["p99_ms"], 12.34)
        self.assertEqual(r["max_ms"], 1200.0)
        self.assertEqual(r["non_2xx"], 7)
        self.assertEqual(r["socket_errors"], 5)
        self.assertEqual(r["timeouts"], 3)

    def test_microseconds_and_a_clean_run(self):
        text = WRK_OUTPUT.replace("12.34ms", "812.00us")
        text = text.replace("  Socket errors: connect 0, read 2, write 0, timeout 3\n", "")
        text = text.replace("  Non-2xx or 3xx responses: 7\n", "")
        r = b.parse_wrk(text)
        self.assertEqual(r["p99_ms"], 0.812)
        self.assertEqual((r["non_2xx"], r["socket_errors"]), (0, 0))
        self.assertEqual(b.wrk_problems("x", r), [])

    def test_no_figures_are_none_not_zero(self):
        r = b.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")
        self.assertIsNone(r["requests_per_second"])
        self.assertIsNone(r["p99_ms"])


class Bars(unittest.TestCase):
    def finish(self, report, strict):
        env = {"BENCH_STRICT": "1"} if strict else {}
        with mock.patch.dict(os.environ, env, clear=False):
            if not strict:
                os.environ.pop("BENCH_STRICT", None)
            os.environ.pop("BENCH_OUT", None)
            out = io.StringIO()
            with redirect_stdout(out):
                rc = report.finish()
        return rc, out.getvalue()

    def test_bars_are_judged_in_their_direction(self):
        r = b.Report("t", {})
        self.assertTrue(r.bar("ratio", 0.9, ">=", 0.85))
        self.assertFalse(r.bar("ratio", 0.8, ">=", 0.85))
        self.assertTrue(r.bar("p99", 10.0, "<=", 10))
        self.assertFalse(r.bar("p99", 10.5, "<=", 10))
        self.assertFalse(r.bar("not measured", None, "<=", 10))

    def test_a_missed_bar_fails_only_when_strict(self):
        r = b.Report("t", {})
        r.bar("ratio", 0.5, ">=", 0.7)
        rc, out = self.finish(r, strict=False)
        self.assertEqual(rc, 0)
        self.assertIn("FAIL  ratio", out)
        rc, out = self.finish(r, strict=True)
        self.assertEqual(rc, 1)

    def test_met_bars_pass_even_when_strict(self):
        r = b.Report("t", {})
        r.bar("ratio", 0.9, ">=", 0.7)
        rc, out = self.finish(r, strict=True)
        self.assertEqual(rc, 0)
        self.assertIn("PASS  ratio", out)

    def test_run_errors_fail_whatever_the_setting(self):
        r = b.Report("t", {})
        r.bar("ratio", 0.9, ">=", 0.7)
        r.problem("wrk: 3 socket errors")
        rc, out = self.finish(r, strict=False)
        self.assertEqual(rc, 1)
        self.assertIn("PROBLEM", out)

    def test_the_json_result_holds_figures_and_bars(self):
        r = b.Report("t", {"connections": 64})
        r.figure("req/s", 1234.5, "/s")
        r.bar("ratio", 0.5, ">=", 0.7)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "out.json")
            with mock.patch.dict(os.environ, {"BENCH_OUT": path}):
                with redirect_stdout(io.StringIO()):
                    r.finish()
            with open(path) as f:
                doc = json.load(f)
        self.assertEqual(doc["figures"][0]["value"], 1234.5)
        self.assertEqual(doc["bars"][0]["passed"], False)
        self.assertEqual(doc["settings"], {"connections": 64})


class Settings(unittest.TestCase):
    def test_connection_lists(self):
        with mock.patch.dict(os.environ, {"BENCH_CONNECTIONS": "64, 256 1000"}):
            self.assertEqual(b.env_counts("BENCH_CONNECTIONS", "1"), [64, 256, 1000])
        with mock.patch.dict(os.environ, {"BENCH_CONNECTIONS": "64 x"}):
            with self.assertRaises(b.SetupError):
                b.env_counts("BENCH_CONNECTIONS", "1")

    def test_lua_strings_escape_everything_special(self):
        self.assertEqual(b.lua_string('a"b\\c\n'), '"a\\034b\\092c\\010"')
        self.assertEqual(b.lua_string("é"), '"\\195\\169"')


if __name__ == "__main__":
    unittest.main()
