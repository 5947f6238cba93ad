"""The embedding pass on a Ray cluster (tl-train --ray): Ray Data over the image list, one embedder actor
per node (or per GPU), the embeddings streamed back and written into the driver's content-hash cache.

Only the list (path, content hash, missing views) leaves the driver; each actor reads the files itself,
so the paths must be reachable from every node (a shared or network file system), and it checks each
file's hash before it embeds it. The model travels with the actors: the converted LiteRT extractor's
bytes, or the backbone's weights for TensorFlow (GPU) actors, so workers need no weights of their own —
only tl-edge installed (`pip install 'tl-edge[cluster]'`; TensorFlow too where GPUs embed).
"""

import collections
import logging
import os
import socket
import warnings

import numpy as np

from tl.device.errors import ConfigError, TLError
from tl.train.embeddings import Todo, compute_here

log = logging.getLogger(__name__)

BATCH_SIZE = 32  # images per actor call and per extractor call
PROBE_TIMEOUT_S = 5
ACTOR_START_TIMEOUT_S = 300
INSTALL = "pip install 'tl-edge[cluster]'"


class ClusterError(TLError, RuntimeError):
    """The Ray cluster cannot be reached, or it failed while embedding."""


def import_ray():
    """Imports Ray, or says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise ConfigError(f"--ray needs Ray, which is not installed ({e}); install it with: {INSTALL}") from e
    return ray


def preflight(address):
    """Checks, before TensorFlow starts, that Ray is installed and something listens at --ray's address."""
    import_ray()
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS")
    if address:
        _probe(address)


def connect(address):
    """Connects to the cluster: "auto" is $RAY_ADDRESS, else a new local cluster; returns what was joined."""
    ray = import_ray()
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or None
    kwargs = {} if address else {"include_dashboard": False}
    if address:
        _probe(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ClusterError(
            f"cannot join the Ray cluster at {address} ({e}); start it with `ray start --head` there, check the "
            "address (host:6379, or ray://host:10001 for Ray Client) or use --ray auto for a local one"
        ) from e
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    # Every actor up before the first block goes out: else the first ready one takes a short list alone.
    ctx.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    # The blocks are short lists of paths, all made on the driver's node: locality would send every one to the
    # actor there while it keeps up, and leave the other nodes idle.
    ctx.execution_options.actor_locality_enabled = False
    # SPREAD reaches Ray as a remote argument, which Ray 2.60 warns about on every pass (it still works).
    warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no "execution finished" lines between our bars
    return address or "local"


def _probe(address, timeout_s=PROBE_TIMEOUT_S):
    """Fails fast when nothing listens at host:port (Ray itself retries a dead address for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray {address!r} is not an address; use host:6379, ray://host:10001 or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ClusterError(
            f"cannot join the Ray cluster at {address}: nothing answers there ({e.strerror or e}); start it with "
            "`ray start --head` there, check the address (host:6379, or ray://host:10001 for Ray Client) or use "
            "--ray auto for a local one"
        ) from e


class Embedder:
    """A Ray Data callable class: one per actor, holding one extractor; embeds batches of Todo rows."""

    def __init__(self, engine, model, backbone, spec, dim, mixed_precision=False):
        import ray

        self.spec, self.dim = spec, dim
        ctx = ray.get_runtime_context()
        if engine == "litert":
            from tl.train.litert_embed import LiteRTExtractor

            # As many threads as CPUs Ray gave this actor: actors sharing a machine must not oversubscribe it.
            cpus = max(1, int(ctx.get_assigned_resources().get("CPU", 1)))
            self.extract = LiteRTExtractor(model, threads=cpus)
        else:
            self.extract = _tf_extractor(model, backbone, mixed_precision)
        self.node = f"{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:8]}"
        self.worker = ctx.get_actor_id() or ctx.get_worker_id()

    def __call__(self, batch):
        todo = [Todo(int(i), str(p), str(d), tuple(str(v).split(",")))
                for i, p, d, v in zip(batch["index"], batch["path"], batch["digest"], batch["views"])]
        rows = list(compute_here(todo, self.extract, self.spec, batch_size=BATCH_SIZE, workers=2))
        vectors = [v if view is not None else np.zeros(self.dim, np.float32) for _, _, view, v in rows]
        return {
            "index": np.array([r[0] for r in rows], np.int64),
            "digest": np.array([r[1] for r in rows]),
            "view": np.array([r[2] or "" for r in rows]),
            "error": np.array([r[3] if r[2] is None else "" for r in rows]),
            "vector": np.stack(vectors).astype(np.float32) if rows else np.zeros((0, self.dim), np.float32),
            "node": np.array([self.node] * len(rows)),
            "worker": np.array([self.worker] * len(rows)),
        }


def _tf_extractor(weights, backbone, mixed_precision):
    """A TensorFlow extractor on this worker: the backbone built without weights, then given the driver's."""
    import dataclasses

    import keras

    from tl.train.backbones import build_backbone
    from tl.train.litert_embed import pooled_model, tf_extractor

    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    features = build_backbone(dataclasses.replace(backbone, weights=None))
    features.set_weights(weights)
    return tf_extractor(pooled_model(features))


class RayEmbedder:
    """Context manager: joins the cluster, embeds Todo lists there (`compute`), and records where.

    Args:
      address: --ray's value ("auto", host:port, ray://host:port).
      engine: tl.train.litert_embed.Engine chosen on the driver; on a cluster with GPUs, TensorFlow
        actors take one GPU each instead of the LiteRT ones.
      features: the driver's backbone (its weights go to TensorFlow actors).
      backbone: its BackboneSpec.
      spec: the InputSpec images are prepared with.
    """

    def __init__(self, address, engine, features, backbone, spec):
        self.address, self.engine, self.features, self.backbone, self.spec = address, engine, features, backbone, spec
        self.images = collections.defaultdict(set)
        self.workers = []  # per pass: the actors that embedded
        self.embeddings = 0

    def __enter__(self):
        ray = import_ray()
        self.joined = connect(self.address)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.nodes = len(nodes)
        self.actor_engine = "tf" if gpus or self.engine.name == "tf" else "litert"
        self.actors = gpus or self.nodes
        self.gpus = gpus
        return self

    def __exit__(self, *exc):
        import ray

        ray.shutdown()
        return False

    def _constructor(self):
        dim = int(self.features.output_shape[-1])
        if self.actor_engine == "litert":
            with open(self.engine.extractor, "rb") as f:
                model = f.read()
        else:
            model = self.features.get_weights()
        return {"engine": self.actor_engine, "model": model, "backbone": self.backbone, "spec": self.spec, "dim": dim,
                "mixed_precision": self.engine.mixed_precision}

    def compute(self, todo):
        """Embeds a Todo list on the cluster; yields (index, digest, view, vector) as results stream back."""
        import ray

        items = [{"index": t.index, "path": t.path, "digest": t.digest, "views": ",".join(t.views)} for t in todo]
        self.workers.append(set())
        # Small blocks, at most two queued per actor: the work spreads over every actor, even on a short list.
        blocks = max(1, min(len(items), max(4 * self.actors, len(items) // BATCH_SIZE)))
        pool = ray.data.ActorPoolStrategy(size=self.actors, max_tasks_in_flight_per_actor=2)
        ds = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            Embedder, fn_constructor_kwargs=self._constructor(), batch_size=BATCH_SIZE, batch_format="numpy",
            compute=pool, num_cpus=1, num_gpus=1 if self.gpus else 0, scheduling_strategy="SPREAD")
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                yield from self._rows(batch)
        except ray.exceptions.RayError as e:
            raise ClusterError(f"the Ray cluster at {self.joined} failed while embedding: {_first_line(e)}") from e

    def _rows(self, batch):
        for i, digest, view, error, vec, node, worker in zip(batch["index"], batch["digest"], batch["view"],
                                                             batch["error"], batch["vector"], batch["node"],
                                                             batch["worker"]):
            self.images[str(node)].add(str(digest))
            self.workers[-1].add(str(worker))
            if view:
                self.embeddings += 1
                yield int(i), str(digest), str(view), np.asarray(vec, np.float32)
            else:
                yield int(i), str(digest), None, str(error)

    def record(self):
        """train.json's "cluster": the address, nodes, workers (actors of the largest pass) and images per node."""
        per_node = {node: len(ix) for node, ix in sorted(self.images.items())}
        return {"address": self.joined, "nodes": self.nodes, "nodes_used": len(per_node), "workers": max(map(len, self.workers), default=0),
                "engine": self.actor_engine, "gpus": self.gpus, "embeddings": self.embeddings,
                "images_per_node": per_node}


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
