"""Running `python -m gender api`: gender.api's routes under uvicorn, in one process or several.

Several processes each listen on a socket of their own on the same port (SO_REUSEPORT), and the
kernel spreads new connections over them by a hash of each (of 50 in benchmarks/api.py, 25/25 to
31/19 seen). uvicorn's own workers share one socket: the first to wake takes the whole burst of
connections a client pool opens at once (15 and 35 of 50), and with keep-alive they stay there,
so one worker's clients waited twice as long as the other's.
"""

from __future__ import annotations

import errno
import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gender.errors import GenderError

APP = "gender.api:standalone_app"


def uvicorn_config():
    import uvicorn

    return uvicorn.Config(
        APP,
        factory=True,
        http="httptools",
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        access_log=False,  # a line a request costs more than the answer; /metrics counts them
        log_level="warning",
    )


def uvicorn_server(serving=None):
    """uvicorn's server of the app, which remembers whether SIGINT (Ctrl+C) stopped it: it stops on
    SIGINT whatever the signal's disposition, and raises it again once shut down, which does nothing
    when SIGINT was ignored at the start (a background job of a script's shell). `serving`: an
    event set once the app has started and the server accepts connections."""
    import uvicorn

    class Server(uvicorn.Server):
        interrupted = False

        def handle_exit(self, sig, frame) -> None:
            self.interrupted = self.interrupted or sig == signal.SIGINT
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.started and serving is not None:
                serving.set()

    return Server(uvicorn_config())


def bound_socket(host: str, port: int, reuse_address: bool = True, reuse_port: bool = False) -> socket.socket:
    """A socket bound to host:port, or a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if reuse_address:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror})"
        raise GenderError(f"{host}:{port} {reason}; choose another with --port") from None
    return sock


def listening_socket(host: str, port: int, shared: bool) -> socket.socket:
    """A socket listening on host:port (`shared`: one of the workers'), or a one-line error."""
    sock = bound_socket(host, port, reuse_port=shared)
    sock.listen(2048)  # uvicorn's backlog
    return sock


def port_holder(host: str, port: int) -> socket.socket:
    """A socket that keeps other servers off host:port while the workers start and serve, and never
    listens (the kernel gives it no connection): bound with SO_REUSEPORT and without SO_REUSEADDR,
    so that only sockets with SO_REUSEPORT of this user, the workers', may bind beside it (Linux)."""
    return bound_socket(host, port, reuse_address=False, reuse_port=True)


def worker(host: str, port: int, serving) -> None:
    """One process of several: its own socket on the shared port, uvicorn on it; sets the event
    `serving` once the app has started (its models loaded) and it accepts connections.

    The socket is bound here and listens only once the app has started (uvicorn listens on it
    then): the kernel gives a worker connections when it can answer them, not while it loads the
    models (a worker started again after one ended: the others answer meanwhile)."""
    try:
        sock = bound_socket(host, port, reuse_port=True)
    except GenderError as exc:  # the port taken since the check: one line, as the command says it
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    try:
        uvicorn_server(serving).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl+C reaches every process of the group: the command says `interrupted`
        pass


@contextmanager
def metrics_folder(port: int) -> Iterator[Path]:
    """The folder the workers count in (prometheus_client's multiprocess mode), this server's own
    while it runs: `gender-metrics-PORT` under the temporary folder, held by a lock (flock) from
    here to its removal at the end, and emptied when taken of what a server killed by a signal
    left. Nothing else touches it meanwhile: a server on the same port of another address (or one
    folder this user may not write) counts in a new folder of its own instead."""
    folder = Path(tempfile.gettempdir()) / f"gender-metrics-{port}"
    held = _hold(folder)
    if held is None:
        folder = Path(tempfile.mkdtemp(prefix=f"gender-metrics-{port}-"))
        held = _hold(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # before the lock goes: no other server empties it meanwhile
        if held is not None:
            os.close(held)


def _hold(folder: Path) -> int | None:
    """A descriptor of `folder` (made if missing) holding its lock, the folder emptied; None when
    another process holds it or it is not this user's to use."""
    import fcntl  # POSIX, as SO_REUSEPORT: several workers run only there

    for _ in range(3):  # again if the folder is removed and made anew between the open and the lock
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            mine = os.fstat(fd)
            now = os.stat(folder, follow_symlinks=False)
        except OSError:  # BlockingIOError: another server's; FileNotFoundError: removed meanwhile
            os.close(fd)
            if not folder.exists():
                continue
            return None
        if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            os.close(fd)
            continue
        if mine.st_uid != os.getuid():
            os.close(fd)
            return None
        for entry in folder.iterdir():  # prometheus_client asks for an empty folder at the start
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return fd
    return None


def _ended(process: multiprocessing.Process) -> str:
    code = process.exitcode
    return f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"


def run(host: str, port: int, workers: int, banner: str) -> None:
    """Print `banner` once the port is ours, then serve until Ctrl+C or SIGTERM. A worker that ends
    on its own after it began serving is started again; one that ends before (its app failed to
    start, which a new one would only repeat) stops them all. Ctrl+C (SIGINT) raises
    KeyboardInterrupt once the server has shut down (its answers under way given, the prediction
    log written)."""
    if workers == 1:
        sock = listening_socket(host, port, shared=False)
        print(banner, file=sys.stderr, flush=True)
        server = uvicorn_server()
        server.run(sockets=[sock])  # raises KeyboardInterrupt after a Ctrl+C, unless SIGINT was ignored
        if server.interrupted:
            raise KeyboardInterrupt
        if not server.started:
            raise GenderError("the API did not start; the reason is above")
        return
    # The port must be free: a socket with SO_REUSEPORT would silently join another server's. Checked
    # before anything is prepared: a start refused here leaves the server on the port as it was.
    listening_socket(host, port, shared=False).close()
    with port_holder(host, port), metrics_folder(port) as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)  # each worker counts there; /metrics adds them up
        stopped_by = _serve_in_workers(host, port, workers, banner, folder)
    if signal.SIGTERM in stopped_by:  # ended by it, as one process is (uvicorn raises it again): status 143
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)


def _serve_in_workers(host: str, port: int, workers: int, banner: str, metrics: Path) -> list[int]:
    """Serve in `workers` processes, counting in the `metrics` folder, until a signal; the signals
    received (Ctrl+C raises)."""
    from prometheus_client.multiprocess import mark_process_dead  # the API's library: loaded with it

    print(banner, file=sys.stderr, flush=True)
    spawn = multiprocessing.get_context("spawn")
    stopped_by: list[int] = []  # the signals received

    def start() -> tuple[multiprocessing.Process, multiprocessing.synchronize.Event]:
        serving = spawn.Event()
        process = spawn.Process(target=worker, args=(host, port, serving), daemon=True)
        process.start()
        return process, serving

    def stop(signum, _frame):
        stopped_by.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl+C reaches the workers too; SIGTERM is passed on
        signal.signal(signum, stop)
    processes = [start() for _ in range(workers)]
    try:
        while not stopped_by:
            for number, (process, serving) in enumerate(processes):
                if process.is_alive() or stopped_by:
                    continue
                if not serving.is_set():
                    raise GenderError(f"an API worker ended before it could serve ({_ended(process)}); see above")
                # Its gauges leave the sums (its prediction log's rows waiting died with it); its counts stay.
                mark_process_dead(process.pid, str(metrics))
                print(f"an API worker ended ({_ended(process)}); starting another", file=sys.stderr)
                processes[number] = start()
            time.sleep(0.2)
    finally:
        for process, _ in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the answers under way and writes the log
        for process, _ in processes:
            process.join(60)
            if process.is_alive():  # hung in its shutdown: it must not keep the port past the command
                process.kill()
                process.join(10)
    if signal.SIGINT in stopped_by:  # Ctrl+C, once every worker has shut down
        raise KeyboardInterrupt
    return stopped_by
