"""Run run.py in this process and total JAX's duration events by name (cold vs warm cache)."""
import collections, runpy, sys, time, json
import jax
tot = collections.defaultdict(float); cnt = collections.Counter()
def on(event, duration, **kw):
    tot[event] += duration; cnt[event] += 1
jax.monitoring.register_event_duration_secs_listener(on)
evs = collections.Counter()
jax.monitoring.register_event_listener(lambda e, **kw: evs.update([e]))
sys.argv = ["run.py"] + sys.argv[1:]
t0 = time.perf_counter()
try:
    runpy.run_path("/work/main/run.py", run_name="__main__")
except SystemExit:
    pass
print("WALL", round(time.perf_counter() - t0, 2))
for k in sorted(tot, key=lambda k: -tot[k]):
    if tot[k] > 0.01: print(f"{tot[k]:8.2f} s {cnt[k]:4d}  {k}")
for k, v in evs.most_common(12): print("event", v, k)
