"""The serve drill, simulation side: real replicas behind HAProxy under open-loop load, reclaimed on a schedule.

One run (``run_once``) in one of three modes, on the same seeded schedule and load:

- ``spotkit``: the agent (``spotkit.runtime.agent``) watches each replica's metadata emulator; its hook
  (``spotkit.rehearsal.serving.handoff``) asks for the replacement at the rebalance recommendation or the notice,
  takes the replica out of the balancer once the replacement is healthy (or when only the drain time is
  left), lets in-flight requests finish; the agent then sends SIGTERM and the replica exits before the
  reclaim (what ECS's DRAINING, the ALB's deregistration delay and stopTimeout do on AWS);
- ``no-agent``: the replica dies at the reclaim, the balancer finds out by failed health checks, the
  replacement starts after the reclaim (an ASG or ECS service without draining);
- ``after-preemption``: at the reclaim the balancer is told (``maint``) and the replacement starts
  (recover after preemption).

The schedule (``ServeDrillSettings.events``) has ``interruptions`` reclaims of spot replicas, including
a wave that takes 2 of the 3 spot replicas at once and one reclaim where no spot capacity comes back
(its replacement comes from the handler's on-demand fallback, ``spotkit.rehearsal.serving.capacity``); some
notices are preceded by a rebalance recommendation. The replica at ``position`` 0 is the on-demand base.

The run returns raw observations (request records, ready-replica samples, the timeline of every
replica and interruption); ``spotkit.rehearsal.serving.analysis`` turns them into figures. Nothing here prints;
every process it starts is ended when it returns, raises, or is interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np

from spotkit.errors import ToolkitError
from spotkit.rehearsal.serving.loadgen import LoadSettings
from spotkit.rehearsal.serving.server import command as replica_command

ROOT = Path(__file__).resolve().parents[2]
MODES = ("spotkit", "no-agent", "after-preemption")


@dataclass(frozen=True)
class Event:
    index: int
    notice_offset: float  # seconds from the load's start
    positions: tuple[int, ...]
    rebalance_lead: Optional[float] = None
    no_capacity: bool = False

    @property
    def wave(self) -> bool:
        return len(self.positions) > 1


@dataclass(frozen=True)
class ServeDrillSettings:
    """The drill's settings; times are scaled down from AWS's (notice 120 s -> 5 s: about 1/24).

    - ``replicas``: replicas serving (the target ready count). Default 4. ``on_demand_base``: of which on
      on-demand capacity, never reclaimed. Default 1.
    - ``interruptions``: spot reclaims. Default 6. ``wave``: one interruption takes 2 spot replicas at
      once. Default on. ``no_capacity``: one reclaim's replacement finds no spot capacity (on-demand
      fallback). Default on.
    - ``seed``: schedule and load. Default 7.
    - ``rate``: requests per second (Poisson, open loop). Default 8. ``tokens``: ``max_tokens`` range.
      Default 8-32. ``stream_share``: streaming share. Default 0.7. ``token_seconds``: time per token.
      Default 0.04 (25 tokens/s, a 7B model on one GPU under load). ``max_in_flight``: the load
      generator's connection limit. Default 512.
    - ``warmup``: seconds of load before the first notice (the uninterrupted stretch). Default 6.
      ``gap_range``: seconds from a reclaim to the next notice (uniform, seeded). Default 2-3.5.
      ``tail``: seconds of load after the last reclaim. Default 3.
    - ``notice_seconds``: notice to reclaim (AWS: 120). Default 5. ``rebalance_lead``: seconds a
      rebalance recommendation comes ahead of the notice, for about ``rebalance_share`` of the
      interruptions; None: none. Default 1.5 and 0.5.
    - ``boot_seconds``: instance launch to server start (ECS: placement, image pull). Default 0.5.
      ``load_seconds``: the server's model load. Default 1.0.
    - ``drain_seconds``: the longest a replica may take to finish in-flight requests once out of the
      balancer (the ALB's deregistration delay; gpu_inference: 60 s). Default 2.0; it must cover the
      longest request.
    - ``check_interval`` / ``rise`` / ``fall``: the balancer's health check (ALB: 15 s, 2, 3). Defaults
      0.25 s, 2, 3. ``stop_timeout``: SIGTERM to SIGKILL for a stopping replica (ECS: 30 s). Default 1.5.
    - ``agent_interval`` / ``margin``: the agent's poll interval and deadline margin. Defaults 0.2, 0.5.
    - ``port``: the balancer's port (0: any free port). ``ready_timeout``: seconds the first replicas
      get to become healthy. Default 30.
    """

    replicas: int = 4
    on_demand_base: int = 1
    interruptions: int = 6
    wave: bool = True
    no_capacity: bool = True
    seed: int = 7
    # the load: the load generator's defaults
    rate: float = LoadSettings.rate
    tokens: tuple[int, int] = LoadSettings.tokens
    stream_share: float = LoadSettings.stream_share
    token_seconds: float = 0.04
    max_in_flight: int = LoadSettings.max_in_flight
    warmup: float = 6.0
    gap_range: tuple[float, float] = (2.0, 3.5)
    tail: float = 3.0
    notice_seconds: float = 5.0
    rebalance_lead: Optional[float] = 1.5
    rebalance_share: float = 0.5
    boot_seconds: float = 0.5
    load_seconds: float = 1.0
    drain_seconds: float = 2.0
    check_interval: float = 0.25
    rise: int = 2
    fall: int = 3
    stop_timeout: float = 1.5
    agent_interval: float = 0.2
    margin: float = 0.5
    port: int = 0
    ready_timeout: float = 30.0

    @property
    def spot_replicas(self) -> int:
        return self.replicas - self.on_demand_base

    @property
    def longest_request(self) -> float:
        return self.tokens[1] * self.token_seconds * 1.5  # with the batch slowdown of a busy replica

    def validate(self) -> None:
        if self.replicas < 2 or not 0 <= self.on_demand_base < self.replicas:
            raise ToolkitError(f"replicas must be 2 or more with on_demand_base below it (got {self.replicas}, "
                               f"base {self.on_demand_base})", hint="spotkit drill --workload serve --replicas 4")
        if self.interruptions < 1:
            raise ToolkitError(f"interruptions must be 1 or more (got {self.interruptions})",
                               hint="spotkit drill --workload serve --interruptions 6")
        if self.wave and self.interruptions < 2:
            raise ToolkitError(f"the wave takes 2 spot replicas at once: it needs 2 interruptions or more "
                               f"(got {self.interruptions})", hint="spotkit drill --workload serve --interruptions 6")
        if self.wave and self.no_capacity and self.interruptions < 3:
            raise ToolkitError(f"a wave of 2 and a separate no-capacity reclaim need 3 interruptions or more "
                               f"(got {self.interruptions})", hint="spotkit drill --workload serve --interruptions 3")
        if self.wave and self.spot_replicas < 2:
            raise ToolkitError(f"a wave takes 2 spot replicas: {self.spot_replicas} spot replica(s) is too few",
                               hint="spotkit drill --workload serve --replicas 4")
        if self.no_capacity and self.spot_replicas < 2:
            raise ToolkitError("the no-capacity reclaim needs 2 spot replicas or more (one turns on-demand)",
                               hint="spotkit drill --workload serve --replicas 4")
        if self.rate <= 0:
            raise ToolkitError(f"rate must be more than 0 requests per second (got {self.rate})",
                               hint="spotkit drill --workload serve --rate 8")
        if self.longest_request > self.drain_seconds:
            raise ToolkitError(
                f"requests of up to {self.longest_request:.2f} s ({self.tokens[1]} tokens x {self.token_seconds} s, "
                f"busy) are longer than the drain window ({self.drain_seconds} s): they would be cut",
                hint=f"spotkit drill --workload serve --drain-seconds {self.longest_request + 0.5:.1f}")
        need = self.drain_seconds + self.margin + self.agent_interval + 0.5
        if self.notice_seconds < need:
            raise ToolkitError(
                f"notice_seconds ({self.notice_seconds}) must be at least drain_seconds + margin + agent poll + 0.5 "
                f"({need:.2f}): a replica could not be drained inside the notice",
                hint=f"spotkit drill --workload serve --notice-seconds {need:.1f}")
        if self.rebalance_lead is not None and not 0 < self.rebalance_lead < self.gap_range[0]:
            raise ToolkitError(f"rebalance_lead must be more than 0 and under the shortest gap between "
                               f"interruptions ({self.gap_range[0]} s), got {self.rebalance_lead}",
                               hint="spotkit drill --workload serve --rebalance-lead 1.5")
        if self.port and not 1024 <= self.port <= 65535:
            raise ToolkitError(f"port must be 1024-65535, or 0 for any free port (got {self.port})",
                               hint="spotkit drill --workload serve --port 0")

    def events(self) -> list[Event]:
        """The seeded schedule: who is reclaimed when (wave second, no-capacity right after it)."""
        rng = np.random.default_rng([self.seed, 270])
        n_events = self.interruptions - (1 if self.wave else 0)
        wave_at = min(1, n_events - 1) if self.wave else None
        no_cap_at = None
        if self.no_capacity:  # a single reclaim: the first after the wave, else the last before it
            singles = [i for i in range(n_events) if i != wave_at]
            after = [i for i in singles if wave_at is None or i > wave_at]
            no_cap_at = (after or singles)[0] if after else singles[-1]
        spot = list(range(self.on_demand_base, self.replicas))
        events, t = [], self.warmup
        for i in range(n_events):
            if i == wave_at:
                positions = tuple(int(p) for p in sorted(rng.choice(spot, 2, replace=False)))
            else:
                positions = (int(rng.choice(spot)),)
            lead = None
            draw = rng.random()
            if self.rebalance_lead is not None and draw < self.rebalance_share:
                lead = self.rebalance_lead
            events.append(Event(i, round(t, 3), positions, lead, i == no_cap_at))
            if i == no_cap_at:
                spot = [p for p in spot if p not in positions]  # that position turns on-demand
            t += self.notice_seconds + float(rng.uniform(*self.gap_range))
        return events

    @property
    def load_seconds_total(self) -> float:
        events = self.events()
        return events[-1].notice_offset + self.notice_seconds + self.tail


@dataclass
class Replica:
    name: str
    position: int
    lifecycle: str  # spot | on-demand
    launched_at: float
    port: int = 0
    slot: Optional[str] = None
    started_at: Optional[float] = None  # server process start
    ready_at: Optional[float] = None  # UP in the balancer
    ended_at: Optional[float] = None
    end: Optional[str] = None  # exited (SIGTERM, drained) | reclaimed (SIGKILL) | drill-end
    replaces: Optional[str] = None
    pid: Optional[int] = None
    events: list = field(default_factory=list)  # hook/agent steps: {"event", "t", ...}


@dataclass
class InterruptionRecord:
    index: int
    replica: str
    position: int
    wave: bool
    no_capacity: bool
    rebalance_at: Optional[float]
    notice_at: float
    reclaimed_at: Optional[float] = None
    replacement: Optional[str] = None
    replacement_requested_at: Optional[float] = None
    replacement_lifecycle: Optional[str] = None
    replacement_ready_at: Optional[float] = None
    drain_started_at: Optional[float] = None
    drain_reason: Optional[str] = None
    out_of_balancer_at: Optional[float] = None
    exited_before_reclaim: Optional[bool] = None
    in_flight_at_reclaim: int = 0
    agent_detected_at: Optional[float] = None


@dataclass
class RunResult:
    mode: str
    settings: dict
    load_started_at: float
    load_ended_at: float
    requests: list[dict]
    ready_samples: list[tuple[float, int]]
    replicas: list[Replica]
    interruptions: list[InterruptionRecord]
    loadgen: dict
    fallback_decisions: list[dict]
    balancer_port: int
    pids: list[int] = field(default_factory=list)  # every process the run started (all ended by now)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "load_started_at": self.load_started_at, "load_ended_at": self.load_ended_at,
                "loadgen": self.loadgen, "balancer_port": self.balancer_port,
                "replicas": [asdict(r) for r in self.replicas],
                "interruptions": [asdict(i) for i in self.interruptions],
                "fallback_decisions": self.fallback_decisions}


class _Control(BaseHTTPRequestHandler):
    """The control plane the hooks call: ECS's scheduler (start a replacement) and a log of hand-off steps."""

    def log_message(self, format, *args):  # noqa: A002
        pass

    def _reply(self, doc: dict, status: int = 200) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        run: _Run = self.server.run  # type: ignore[attr-defined]
        doc = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        path = urlsplit(self.path).path
        if path == "/replace":
            return self._reply(run.request_replacement(str(doc.get("replica")), why="hook"))
        if path == "/event":
            run.record_event(str(doc.pop("replica", "")), doc)
            return self._reply({"ok": True})
        return self._reply({"error": "no route"}, 404)

    def do_GET(self):  # noqa: N802
        run: _Run = self.server.run  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        if parts.path == "/replacement":
            name = parse_qs(parts.query).get("replica", [""])[0]
            return self._reply(run.replacement_state(name))
        return self._reply({"error": "no route"}, 404)


class _QuietHTTP(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


class _Run:
    """The state of one run: processes, balancer, emulators, agents. ``close()`` ends them all."""

    def __init__(self, mode: str, settings: ServeDrillSettings, workdir: Path, say: Callable[[str], None]):
        from spotkit.rehearsal.serving.balancer import Balancer, BalancerSettings
        from spotkit.rehearsal.serving.capacity import SpotCapacity

        self.mode, self.s, self.dir, self.say = mode, settings, workdir, say
        self.lock = threading.RLock()
        self.replicas: dict[str, Replica] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.emulators: dict[str, object] = {}
        self.agents: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self.replacement_of: dict[str, str] = {}
        self.interruptions: list[InterruptionRecord] = []
        self.threads: list[threading.Thread] = []
        self.ready_samples: list[tuple[float, int]] = []
        self.no_capacity_for: set[str] = set()
        self.counter = 0
        self.closed = threading.Event()
        self.loadgen: Optional[subprocess.Popen] = None
        self.capacity = SpotCapacity(settings.spot_replicas)
        slots = settings.replicas + settings.interruptions + 4
        self.balancer = Balancer(BalancerSettings(port=settings.port, slots=slots, check_interval=settings.check_interval,
                                                  rise=settings.rise, fall=settings.fall), workdir)
        self.control = _QuietHTTP(("127.0.0.1", 0), _Control)
        self.control.run = self  # type: ignore[attr-defined]
        self.control_url = f"http://127.0.0.1:{self.control.server_address[1]}"
        self.control_thread = threading.Thread(target=self.control.serve_forever, kwargs={"poll_interval": 0.1},
                                               daemon=True, name="control-plane")
        self.control_thread.start()

    # --- replicas -------------------------------------------------------------------------------

    def new_replica(self, position: int, lifecycle: str, replaces: Optional[str] = None) -> Replica:
        with self.lock:
            self.counter += 1
            rep = Replica(name=f"r{self.counter}", position=position, lifecycle=lifecycle, launched_at=time.time(),
                          replaces=replaces)
            self.replicas[rep.name] = rep
        return rep

    def start_server(self, rep: Replica, boot: float = 0.0) -> None:
        """``boot`` seconds (the instance), then the replica's server, registered in the balancer."""
        if boot and self.closed.wait(boot):
            rep.ended_at, rep.end = time.time(), "drill-end"
            return
        from spotkit.rehearsal.ports import free_port

        rep.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        with open(self.dir / f"replica-{rep.name}.log", "wb") as log:
            proc = subprocess.Popen(replica_command(rep.port, rep.name, token_seconds=self.s.token_seconds,
                                                    load_seconds=self.s.load_seconds, stop_timeout=self.s.stop_timeout),
                                    env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        with self.lock:
            self.procs[rep.name] = proc
            rep.pid, rep.started_at = proc.pid, time.time()
            if self.closed.is_set():
                self._kill(rep.name, "drill-end")
                return
            rep.slot = self.balancer.register(rep.port)
        if self.mode == "spotkit":
            self._start_agent(rep)

    def _kill(self, name: str, why: str) -> None:
        proc = self.procs.get(name)
        rep = self.replicas[name]
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            rep.end = why
        if rep.ended_at is None:
            rep.ended_at = time.time()
            rep.end = rep.end or why

    def _start_agent(self, rep: Replica) -> None:
        from spotkit.runtime.agent import AgentConfig, JsonLogger, run_until_notice
        from spotkit.rehearsal.drill import _cloud_emulator  # the training drill's emulator, same settings
        from spotkit.rehearsal.drill import DrillSettings

        base = shlex.join(["env", f"PYTHONPATH={ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", sys.executable,
                           "-m", "spotkit.rehearsal.serving.handoff", "--control", self.control_url, "--replica", rep.name,
                           "--socket", str(self.balancer.socket_path), "--slot", str(rep.slot),
                           "--drain-seconds", str(self.s.drain_seconds)])
        try:  # the replica's process group (its own session): what the agent signals
            config = AgentConfig(on_notice=base, on_rebalance=base + " --replace-only", workload_pgid=rep.pid,
                                 interval=self.s.agent_interval, margin=self.s.margin, complete_lifecycle=False,
                                 once=True, rebalance_timeout=self.s.notice_seconds)
        except ValueError as exc:  # the replica is already gone: nothing to watch
            rep.events.append({"event": "agent-not-started", "t": time.time(), "error": str(exc)})
            return
        emulator, _ = _cloud_emulator(DrillSettings(notice_seconds=self.s.notice_seconds))
        with self.lock:
            if self.closed.is_set():
                return
            emulator.start()
            self.emulators[rep.name] = emulator
        stop = threading.Event()

        def watch():
            try:
                with open(self.dir / f"agent-{rep.name}.jsonl", "a") as log:
                    result = run_until_notice(emulator.url, config, stop=stop, log=JsonLogger(log))
                self.record_event(rep.name, {"event": "agent-drained", "t": result.detected_at,
                                             "signal_sent_at": result.signal_sent_at})
            except (TimeoutError, ValueError, OSError):
                pass

        thread = threading.Thread(target=watch, daemon=True, name=f"agent-{rep.name}")
        with self.lock:
            self.agents[rep.name] = (thread, stop)
            if self.closed.is_set():
                stop.set()
        thread.start()

    # --- the control plane (called by hooks, and by the drill for the baselines) ---------------

    def request_replacement(self, name: str, why: str) -> dict:
        """Start the replacement of ``name`` (once): a new instance on spot, or on-demand after the fallback."""
        with self.lock:
            if name in self.replacement_of:
                return {"replacement": self.replacement_of[name], "again": True}
            old = self.replicas.get(name)
            if old is None or self.closed.is_set():
                return {"error": f"no replica {name}"}
            if self.mode == "spotkit" and old.ended_at is None:
                self.capacity.autoscaling.change_desired(+1)  # managed scaling: an instance for the new task
            rep = self.new_replica(old.position, old.lifecycle, replaces=name)
            if old.lifecycle == "spot":
                try:
                    rep.lifecycle = self.capacity.launch(f"i-{rep.name}",
                                                         spot_available=name not in self.no_capacity_for)
                except RuntimeError as exc:
                    rep.ended_at, rep.end = time.time(), f"not launched: {exc}"
                    return {"error": str(exc)}
            self.replacement_of[name] = rep.name
            for item in self.interruptions:
                if item.replica == name:
                    item.replacement, item.replacement_lifecycle = rep.name, rep.lifecycle
                    item.replacement_requested_at = time.time()
            thread = threading.Thread(target=self.start_server, args=(rep, self.s.boot_seconds), daemon=True,
                                      name=f"boot-{rep.name}")
            thread.start()
            self.threads.append(thread)
        return {"replacement": rep.name, "lifecycle": rep.lifecycle, "why": why}

    def replacement_state(self, name: str) -> dict:
        with self.lock:
            new = self.replacement_of.get(name)
            rep = self.replicas.get(new) if new else None
            return {"replacement": new, "ready": bool(rep and rep.ready_at)}

    def record_event(self, name: str, doc: dict) -> None:
        with self.lock:
            rep = self.replicas.get(name)
            if rep is None:
                return
            rep.events.append(doc)
            for item in self.interruptions:
                if item.replica != name:
                    continue
                if doc.get("event") == "drain-started":
                    item.drain_started_at, item.drain_reason = doc.get("t"), doc.get("reason")
                elif doc.get("event") == "out-of-balancer":
                    item.out_of_balancer_at = doc.get("t")
                elif doc.get("event") == "agent-drained":
                    item.agent_detected_at = doc.get("t")

    # --- observation ------------------------------------------------------------------------

    def sample(self) -> None:
        """Every 0.1 s: which slots are UP (ready replicas); marks replicas ready and exited."""
        while not self.closed.is_set():
            try:
                stats = self.balancer.servers()
            except OSError:
                stats = {}
            now = time.time()
            with self.lock:
                ready = 0
                for rep in self.replicas.values():
                    st = stats.get(rep.slot or "", {}).get("status", "")
                    if st.startswith("UP"):  # "UP 1/3": failing checks, still taking requests
                        ready += 1
                        if rep.ready_at is None:
                            rep.ready_at = now
                    proc = self.procs.get(rep.name)
                    if proc is not None and proc.poll() is not None and rep.ended_at is None:
                        rep.ended_at, rep.end = now, "exited"
                self.ready_samples.append((now, ready))
            self.closed.wait(0.1)

    def wait_all_ready(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                waiting = [r for r in self.replicas.values() if r.ready_at is None]
                dead = [r for r in waiting if r.name in self.procs and self.procs[r.name].poll() is not None]
            if dead:
                r = dead[0]
                raise ToolkitError(f"replica {r.name} exited before it got healthy (exit code "
                                   f"{self.procs[r.name].returncode})",
                                   hint=f"cat {self.dir / f'replica-{r.name}.log'}")
            if not waiting:
                return
            time.sleep(0.05)
        r = waiting[0]
        raise ToolkitError(f"replica {r.name} did not get healthy in the balancer within {timeout:.0f} s "
                           f"(GET /health on 127.0.0.1:{r.port})",
                           hint=f"cat {self.dir / f'replica-{r.name}.log'}   # or raise --ready-timeout")

    def pids(self) -> list[int]:
        procs = [self.balancer.proc, self.loadgen, *self.procs.values()]
        return [p.pid for p in procs if p is not None]

    def close(self) -> None:
        """End everything this run started; each step runs even when an earlier one failed."""
        self.closed.set()

        def kill_loadgen():
            if self.loadgen is not None and self.loadgen.poll() is None:
                try:
                    os.killpg(self.loadgen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.loadgen.wait()

        def kill_replicas():
            for thread in list(self.threads):  # a replacement booting now sees `closed` and ends itself
                thread.join(timeout=5)
            with self.lock:
                for name in list(self.procs):
                    self._kill(name, "drill-end")

        def stop_control():
            self.control.shutdown()
            self.control.server_close()

        def stop_emulators():
            with self.lock:
                emulators = list(self.emulators.values())
            for emulator in emulators:
                try:
                    emulator.stop()
                except OSError:
                    continue

        def stop_agents():
            with self.lock:
                agents = list(self.agents.values())
            for _thread, stop in agents:
                stop.set()

        steps = [stop_agents, kill_loadgen, kill_replicas, stop_agents, stop_emulators, self.balancer.stop,
                 stop_control, lambda: [thread.join(timeout=2) for thread, _s in list(self.agents.values())]]
        for step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - cleaning up: the next step must run whatever this one did
                continue


def _sleep_until(when: float) -> None:
    while True:
        left = when - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def run_once(mode: str, settings: ServeDrillSettings, workdir: Path,
             on_event: Optional[Callable[[str], None]] = None) -> RunResult:
    """One run of the serve drill (see the module doc); every process it started is gone when it returns."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    settings.validate()
    say = on_event or (lambda _msg: None)
    run_dir = Path(workdir) / mode
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in list(run_dir.glob("*.log")) + list(run_dir.glob("*.jsonl")):
        old.unlink()
    run = _Run(mode, settings, run_dir, say)
    requests_path = run_dir / "requests.jsonl"
    summary_path = run_dir / "loadgen.json"
    summary_path.unlink(missing_ok=True)
    try:
        positions = _start_replicas(run)
        duration = settings.load_seconds_total
        start_at = time.time() + 0.3
        _start_loadgen(run, duration, start_at, requests_path, summary_path)
        say(f"{mode}: {settings.replicas} replicas ready behind haproxy at {run.balancer.url}; load "
            f"{settings.rate:g} req/s for {duration:.0f} s")
        for event in settings.events():
            _interrupt(run, event, positions, start_at)
        run.loadgen.wait(timeout=duration + 60)
        load_ended = time.time()
        for name, (thread, stop) in run.agents.items():
            stop.set()
        loadgen = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        # fill replacement readiness from the replicas' timeline
        for item in run.interruptions:
            new = run.replicas.get(item.replacement or "")
            if new is not None:
                item.replacement_ready_at = new.ready_at
    finally:
        run.close()
    for rep in run.replicas.values():
        if rep.ended_at is None:
            rep.ended_at, rep.end = load_ended, "drill-end"
    return RunResult(mode=mode, settings=asdict(settings), load_started_at=start_at, load_ended_at=load_ended,
                     requests=_read_requests(requests_path), ready_samples=run.ready_samples,
                     replicas=list(run.replicas.values()), interruptions=run.interruptions, loadgen=loadgen,
                     fallback_decisions=run.capacity.decisions, balancer_port=run.balancer.port,
                     pids=run.pids())


def _start_replicas(run: _Run) -> dict[int, str]:
    """The balancer and the first replicas, healthy; returns position -> replica name."""
    settings = run.s
    run.balancer.start()
    positions: dict[int, str] = {}
    for position in range(settings.replicas):
        lifecycle = "on-demand" if position < settings.on_demand_base else "spot"
        rep = run.new_replica(position, lifecycle)
        if lifecycle == "spot":
            run.capacity.autoscaling.add_instance(f"i-{rep.name}", "spot")
        run.start_server(rep)
        positions[position] = rep.name
    sampler = threading.Thread(target=run.sample, daemon=True)
    sampler.start()
    run.wait_all_ready(settings.ready_timeout)
    return positions


def _start_loadgen(run: _Run, duration: float, start_at: float, requests_path: Path, summary_path: Path) -> None:
    """The load generator, in its own process, against the balancer from ``start_at`` (epoch)."""
    settings = run.s
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(run.dir / "loadgen.log", "wb") as loadgen_log:
        run.loadgen = subprocess.Popen(
            [sys.executable, "-m", "spotkit.rehearsal.serving.loadgen", "--url", run.balancer.url,
             "--rate", str(settings.rate),
             "--duration", str(duration), "--seed", str(settings.seed), "--tokens", *map(str, settings.tokens),
             "--stream-share", str(settings.stream_share), "--max-in-flight", str(settings.max_in_flight),
             "--start-at", f"{start_at:.4f}", "--out", str(requests_path), "--summary", str(summary_path)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=loadgen_log,
            start_new_session=True)


def _interrupt(run: _Run, event: Event, positions: dict[int, str], start_at: float) -> None:
    """One interruption of the schedule: its rebalance recommendation, notice and reclaim, on time."""
    from spotkit.rehearsal.drill import _whole_second_action

    settings, mode = run.s, run.mode
    notice_at = _whole_second_action(start_at + event.notice_offset, settings.notice_seconds)
    reclaim_at = notice_at + settings.notice_seconds
    targets = [positions[p] for p in event.positions if positions.get(p)]  # (None: never replaced)
    records = []
    for name in targets:
        rep = run.replicas[name]
        item = InterruptionRecord(index=event.index, replica=name, position=rep.position, wave=event.wave,
                                  no_capacity=event.no_capacity, rebalance_at=None, notice_at=notice_at)
        records.append(item)
        with run.lock:
            run.interruptions.append(item)
            if event.no_capacity:
                run.no_capacity_for.add(name)
    if event.rebalance_lead is not None:
        _sleep_until(notice_at - event.rebalance_lead)
        _notify(run, records, "rebalance", "rebalance_at")
    _sleep_until(notice_at)
    _notify(run, records, "spot", "notice_at")
    kind = "wave of 2" if event.wave else "reclaim"
    run.say(f"{mode}: interruption {event.index + 1}: {kind} ({', '.join(targets)}) notice at "
            f"+{notice_at - start_at:.1f}s" + (", no spot capacity" if event.no_capacity else "")
            + (f", rebalance {event.rebalance_lead:g}s ahead" if event.rebalance_lead else ""))
    _sleep_until(reclaim_at)
    for item in records:
        _reclaim(run, item, positions)
    run.say(f"{mode}:   reclaimed {', '.join(targets)} at +{time.time() - start_at:.1f}s")


def _notify(run: _Run, records: list[InterruptionRecord], kind: str, stamp: str) -> None:
    """Each target's metadata emulator shows ``kind`` now (``rebalance`` or ``spot``); ``stamp`` records when."""
    for item in records:
        setattr(item, stamp, time.time())
        emulator = run.emulators.get(item.replica)
        if emulator is not None:
            emulator.interrupt(kind, lead_seconds=run.s.notice_seconds)


def _reclaim(run: _Run, item: InterruptionRecord, positions: dict[int, str]) -> None:
    """The reclaim of one replica: killed if still running, and replaced unless the hook already asked."""
    mode = run.mode
    rep = run.replicas[item.replica]
    stats = {}
    try:
        stats = run.balancer.servers()
    except OSError:
        pass
    with run.lock:
        proc = run.procs.get(rep.name)
        alive = proc is not None and proc.poll() is None
        item.exited_before_reclaim = not alive
        item.in_flight_at_reclaim = stats.get(rep.slot or "", {}).get("scur", 0) if alive else 0
        run._kill(rep.name, "reclaimed" if alive else "exited")
        if not alive and rep.end is None:
            rep.end = "exited"
        item.reclaimed_at = time.time()
        run.capacity.autoscaling.remove_instance(f"i-{rep.name}")
    if mode == "after-preemption" and rep.slot:
        run.balancer.set_state(rep.slot, "maint")  # the balancer is told at the reclaim
    if mode != "spotkit" or rep.name not in run.replacement_of:
        if mode == "spotkit":
            run.capacity.autoscaling.change_desired(+1)
        run.request_replacement(rep.name, why="reclaim")
    if mode == "spotkit":
        run.capacity.autoscaling.change_desired(-1)  # the reclaimed instance's place is taken
    positions[item.position] = run.replacement_of.get(rep.name)  # None: no capacity at all


def _read_requests(requests_path: Path) -> list[dict]:
    """The load generator's request records (a line cut short by the end of the run is left out)."""
    requests = []
    if requests_path.exists():
        for line in requests_path.read_text().splitlines():
            try:
                requests.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return requests


def run_serve_drill(settings: ServeDrillSettings, workdir: Path, modes: tuple[str, ...] = MODES,
                    on_event: Optional[Callable[[str], None]] = None) -> dict[str, RunResult]:
    """The runs one after the other on the same schedule and load; SIGTERM ends them like Ctrl-C."""
    settings.validate()
    from spotkit.rehearsal.serving.balancer import find_haproxy

    find_haproxy()
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_term(_signum, _frame):
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return {mode: run_once(mode, settings, workdir, on_event) for mode in modes}
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
