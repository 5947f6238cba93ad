"""The classification head: dropout → (hidden) → dense softmax, trained on cached embeddings."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """How the head is shaped and trained (every field is a tl-train option).

    Attributes:
      dropout: dropout rate on the pooled features (and after the hidden layer).
      hidden: units of an optional hidden ReLU layer; 0 means a linear head.
      l2: L2 weight decay on the dense kernels; keeps the head from memorising.
      label_smoothing: softens one-hot targets, for less over-confident scores.
      epochs: upper bound; early stopping on validation loss usually ends sooner.
      patience: epochs without validation-loss improvement before stopping.
      batch_size, learning_rate: Adam's settings.
      class_weights: weight classes inversely to their frequency (imbalanced folders).
      prior_scale: weight of the ImageNet dog margin added to the dog class's logit (tl.train.prior:
        a product of experts with the backbone's own 1000-class top); 0 leaves it out.
    """

    dropout: float = 0.2
    hidden: int = 0
    l2: float = 1e-4
    label_smoothing: float = 0.1
    epochs: int = 100
    patience: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    class_weights: bool = True
    prior_scale: float = 0.0


def build_head(dim, num_classes, cfg, seed=0, prior=None, prior_dogs=()):
    """Builds the head as a model from a (dim,) embedding to softmax scores.

    Args:
      prior: (kernel, bias) of the ImageNet top (tl.train.prior), or None.
      prior_dogs: indices of the classes whose logit gets cfg.prior_scale x the ImageNet dog margin
        (when prior is given and cfg.prior_scale > 0).
    """
    import keras

    reg = keras.regularizers.L2(cfg.l2) if cfg.l2 else None
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((dim,), name="embedding")
    x = keras.layers.Dropout(cfg.dropout, seed=seed, name="dropout")(inputs)
    if cfg.hidden:
        x = keras.layers.Dense(cfg.hidden, activation="relu", kernel_regularizer=reg, kernel_initializer=init, name="hidden")(x)
        x = keras.layers.Dropout(cfg.dropout, seed=seed + 1, name="hidden_dropout")(x)
    # float32 output even under mixed precision, so softmax stays numerically sound.
    logits = keras.layers.Dense(num_classes, kernel_regularizer=reg, kernel_initializer=init, dtype="float32",
                                name="logits")(x)
    if prior is not None and cfg.prior_scale > 0 and prior_dogs:
        from tl.train.prior import prior_branch

        offset = prior_branch(inputs, prior[0], prior[1], cfg.prior_scale, num_classes, prior_dogs)
        logits = keras.layers.Add(name="with_prior", dtype="float32")([logits, offset])
    out = keras.layers.Softmax(name="scores", dtype="float32")(logits)
    return keras.Model(inputs, out, name="head")


TEMPERATURE_LAYERS = ("logits", "imagenet_prior")  # every linear path into the softmax


def fold_temperature(head, temperature):
    """Divides every logit path of the head by T (Dense kernels and biases): its softmax is then calibrated."""
    names = {layer.name for layer in head.layers}
    for name in TEMPERATURE_LAYERS:
        if name in names:
            layer = head.get_layer(name)
            layer.set_weights([w / np.float32(temperature) for w in layer.get_weights()])


def compile_model(model, learning_rate, label_smoothing, steps_per_execution=1):
    """(Re)compiles with Adam and categorical cross-entropy on one-hot targets."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
        # Several steps per call: the head's steps are tiny, so Python overhead would dominate.
        steps_per_execution=steps_per_execution,
    )


def balanced_class_weights(y, num_classes):
    """Weights n / (k * count) per class, as scikit-learn's "balanced" does."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weights = len(y) / (num_classes * np.maximum(counts, 1))
    return {i: float(w) for i, w in enumerate(weights)}


def one_hot(y, num_classes):
    return np.eye(num_classes, dtype=np.float32)[np.asarray(y)]


def validation_callback(x_val, y_val, label_smoothing):
    """A callback that puts val_loss and val_accuracy into each epoch's logs with one model call.

    `x_val` is the model's input: one array, or a tuple of arrays for a model with several inputs.

    Keras' own validation_data path costs more than the head's whole training epoch (a fresh
    evaluation loop per epoch); the head's validation set is one small matrix, so one call does it.
    Listed before EarlyStopping, whose on_epoch_end then sees val_loss as usual.
    """
    import keras
    import tensorflow as tf

    x = tuple(tf.constant(a) for a in x_val) if isinstance(x_val, tuple) else tf.constant(x_val)
    y = tf.constant(y_val)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)

    class Validation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            p = self.model(x, training=False)
            logs["val_loss"] = float(loss(y, p))  # data loss only: the L2 penalty says nothing of validation
            logs["val_accuracy"] = float(np.mean(np.argmax(p, 1) == np.argmax(y_val, 1)))

    return Validation()


TRAINABLE_PATH = ("dropout", "hidden", "hidden_dropout", "logits")  # embedding -> logits, in order


def fitted_part(head, x_train, x_val):
    """The model that training fits, and its inputs: the head itself, or — with the ImageNet prior — its trainable path.

    The prior's offset is a frozen function of the embedding (tl.train.prior.prior_branch: a 1280x1000 product and
    two max-poolings, far costlier than the head's own Dense), so it is computed once per row here, and the fitted
    model adds it as a second input. That model shares its layers with `head`: fitting it trains the head, and the
    head's scores equal the fitted model's on the same rows (tests/test_train_calibration.py checks both).

    Returns:
      (model, x_train, x_val), the inputs as the model takes them.
    """
    import keras

    names = [layer.name for layer in head.layers]
    if "imagenet_prior" not in names:
        return head, x_train, x_val
    offsets = keras.Model(head.input, head.get_layer("imagenet_prior").output, name="prior_offsets")

    def with_offsets(x):
        return x, offsets.predict(x, batch_size=1024, verbose=0).astype(np.float32)

    emb = keras.Input(head.input_shape[1:], name="embedding")
    offset = keras.Input(head.output_shape[1:], name="prior_offset")
    x = emb
    for name in TRAINABLE_PATH:
        if name in names:
            x = head.get_layer(name)(x)
    logits = keras.layers.Add(dtype="float32")([x, offset])
    scores = keras.layers.Softmax(dtype="float32")(logits)
    return keras.Model((emb, offset), scores, name="head_fit"), with_offsets(x_train), with_offsets(x_val)


def train_head(head, x_train, y_train, x_val, y_val, cfg, callbacks=(), seed=0):
    """Fits the head on embeddings with early stopping on validation loss (best weights restored).

    Returns:
      The Keras History.history dict.
    """
    import keras
    import tensorflow as tf

    n = head.output_shape[-1]
    model, x_train, x_val = fitted_part(head, x_train, x_val)
    # Several steps per call only on one replica: Keras 3 cannot loop them over a MirroredStrategy's replicas.
    steps = 64 if tf.distribute.get_strategy().num_replicas_in_sync == 1 else 1
    compile_model(model, cfg.learning_rate, cfg.label_smoothing, steps_per_execution=steps)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    # A tf.data pipeline reshuffled every epoch: far less per-epoch overhead than numpy arrays. Class weights
    # travel as per-row sample weights (what Keras' class_weight computes, without its per-batch lookup).
    rows = (x_train, one_hot(y_train, n))
    if cfg.class_weights:
        weights = balanced_class_weights(y_train, n)
        rows += (np.array([weights[c] for c in range(n)], np.float32)[np.asarray(y_train)],)
    train_ds = (
        tf.data.Dataset.from_tensor_slices(rows)
        .cache()
        .shuffle(len(y_train), seed=seed, reshuffle_each_iteration=True)
        .batch(cfg.batch_size)
    )
    history = model.fit(
        train_ds,
        epochs=cfg.epochs,
        callbacks=[validation_callback(x_val, one_hot(y_val, n), cfg.label_smoothing), stop, *callbacks],
        shuffle=False,  # the dataset reshuffles itself
        verbose=0,
    )
    return history.history


def epoch_bar(desc, epochs):
    """A Keras callback showing a tqdm bar over epochs with the latest losses (Keras' own bar is per step)."""
    import keras
    from tqdm.auto import tqdm

    class EpochBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=epochs, desc=desc, unit="epoch", leave=False)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.bar.set_postfix({k: f"{logs[k]:.3f}" for k in ("loss", "val_loss", "val_accuracy") if k in logs})
            self.bar.update(1)

        def on_train_end(self, logs=None):
            self.bar.close()

    return EpochBar()
