"""thermo-filter: reads a temperature sensor, smooths it, hands it to the node's pipelines.

The sensor is simulated (a slow swing around 22 °C with noise, and a heat
spike now and then), so the module runs anywhere. Each reading is smoothed
with an exponential filter and POSTed to the agent's local HTTP ingest,
where the pipelines of the node's desired state take it.

Configuration (the deployment's `config:` for this module, a JSON file
whose path the agent gives in FOGLINE_CONFIG):
    sensor     name of the sensor, a field of every reading (default t1)
    interval   seconds between readings (default 1)
    alpha      smoothing weight of a new reading, 0..1 (default 0.3)
    ingest     where to post readings (default http://127.0.0.1:9271/ingest)

HTTP on 127.0.0.1:$PORT: /healthz answers 200 while readings are taken,
/ the latest reading as JSON. Standard library only.
"""

import http.server
import json
import math
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request

VERSION = os.environ.get("FOGLINE_MODULE_VERSION", "dev")
PORT = int(os.environ.get("PORT", "9280"))


def load_config() -> dict:
    path = os.environ.get("FOGLINE_CONFIG")
    config = {}
    if path:
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
    ingest = str(config.get("ingest", "http://127.0.0.1:9271/ingest"))
    if not ingest.startswith(("http://", "https://")):
        sys.exit(f"config: ingest must be an http:// or https:// URL, got {ingest!r}")
    return {
        "sensor": str(config.get("sensor", "t1")),
        "interval": max(0.1, float(config.get("interval", 1.0))),
        "alpha": min(1.0, max(0.0, float(config.get("alpha", 0.3)))),
        "ingest": ingest,
    }


CONFIG = load_config()
state = {"latest": None, "taken_at": 0.0, "sent": 0, "refused": 0}


def read_sensor(t: float) -> float:
    """The simulated sensor: 22 °C give or take 3, noise, and a 40 °C spike every 2 minutes."""
    spike = 18.0 if int(t) % 120 < 5 else 0.0
    return 22.0 + 3.0 * math.sin(t / 60.0) + random.gauss(0.0, 0.4) + spike


def post(reading: dict) -> bool:
    request = urllib.request.Request(  # noqa: S310 (an http(s) URL: checked in load_config)
        CONFIG["ingest"],
        data=json.dumps(reading).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 (see above)
            return answer.status == 202
    except (urllib.error.URLError, OSError):
        return False  # no pipeline yet, or the agent is restarting: the next reading goes


def sample_forever() -> None:
    smoothed = None
    last_note = 0.0
    while True:
        now = time.time()
        raw = read_sensor(now)
        smoothed = raw if smoothed is None else smoothed + CONFIG["alpha"] * (raw - smoothed)
        reading = {
            "sensor": CONFIG["sensor"],
            "raw": round(raw, 2),
            "value": round(smoothed, 2),
            "ts": now,
        }
        state["latest"], state["taken_at"] = reading, now
        if post(reading):
            state["sent"] += 1
        else:
            state["refused"] += 1
        if now - last_note >= 30:  # a line every 30 s, not one per reading
            sent, refused = state["sent"], state["refused"]
            print(
                f"{sent} readings sent, {refused} not taken; last {reading['value']} C", flush=True
            )
            last_note = now
        time.sleep(CONFIG["interval"])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            fresh = time.time() - state["taken_at"] < 3 * CONFIG["interval"] + 5
            self.answer(200 if fresh else 503, {"status": "ok" if fresh else "stale"})
        elif self.path == "/":
            self.answer(200, {"version": VERSION, "config": CONFIG, **state})
        else:
            self.answer(404, {"error": "not found"})

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass  # probes every few seconds are not news


def main() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    every = f"sensor {CONFIG['sensor']} every {CONFIG['interval']:g}s"
    print(f"thermo-filter {VERSION} on 127.0.0.1:{PORT}, {every} -> {CONFIG['ingest']}", flush=True)
    threading.Thread(target=sample_forever, name="sensor", daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
