"""Posts N calls round-robin over the given API keys with 32 threads; prints the accept rate."""
import concurrent.futures
import json
import sys
import time
import urllib.request

url, n, keys = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def post(i: int) -> int:
    body = json.dumps({"scenario": "appointment_reminder", "phone": "+3412345%04d" % (i % 10000),
                       "metadata": {"sim_ring_ms": 0, "sim_talk_ms": 1, "n": i}}).encode()
    req = urllib.request.Request(url + "/v1/calls", data=body, method="POST", headers={
        "Authorization": "Bearer " + keys[i % len(keys)], "Content-Type": "application/json",
        "Idempotency-Key": "pipe-%d-%d" % (time.time_ns(), i)})
    for _ in range(20):
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            if e.code not in (409, 429, 503):
                return e.code
            time.sleep(0.2)
    return 0


t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(32) as ex:
    codes = list(ex.map(post, range(n)))
dt = time.time() - t0
print("posted %d calls in %.1f s (%.0f/s); answers: %s" % (n, dt, n / dt, {c: codes.count(c) for c in set(codes)}))
