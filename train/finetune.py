"""Optional fine-tuning: unfreeze the top of the backbone and train end to end at a low learning rate."""

import logging

import numpy as np

from tl.train.head import compile_model, one_hot

log = logging.getLogger(__name__)


def unfreeze_top(base, n_layers):
    """Makes the last `n_layers` layers of `base` trainable, BatchNorm excepted.

    BatchNorm stays frozen (and runs in inference mode, because the backbone is called with
    training=False): with small batches its statistics would otherwise drift and wreck the features.

    Returns:
      The number of layers made trainable.
    """
    import keras

    base.trainable = True
    count = 0
    for i, layer in enumerate(base.layers):
        top = i >= len(base.layers) - n_layers
        layer.trainable = top and not isinstance(layer, keras.layers.BatchNormalization)
        count += layer.trainable
    return count


def augmentation(seed):
    """On-the-fly augmentation for fine-tuning, kept outside the exported model."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.05, seed=seed),
            keras.layers.RandomZoom(0.1, seed=seed),
            keras.layers.RandomContrast(0.1, seed=seed),
        ],
        name="augment",
    )


def fine_tune(model, base, n_layers, epochs, learning_rate, data, cfg, seed=0, callbacks=()):
    """Fine-tunes `model` in place on decoded images.

    Args:
      model: the full classifier (raw pixels in, softmax out).
      base: the keras.applications model inside it.
      n_layers: how many top layers of `base` to unfreeze.
      epochs: maximum fine-tuning epochs (early stopping on validation loss, best weights kept).
      learning_rate: small, e.g. 1e-5, so pretrained features are nudged, not overwritten.
      data: (x_train, y_train, x_val, y_val) with x as uint8 (N, H, W, 3).
      cfg: the HeadConfig (batch size, label smoothing, patience, class weights).

    Returns:
      The Keras History.history dict.
    """
    import keras
    import tensorflow as tf

    from tl.train.head import balanced_class_weights

    x_train, y_train, x_val, y_val = data
    n = model.output_shape[-1]
    trainable = unfreeze_top(base, n_layers)
    log.info("fine-tuning %d layers of %s", trainable, base.name)
    compile_model(model, learning_rate, cfg.label_smoothing)
    augment = augmentation(seed)
    train_ds = (
        tf.data.Dataset.from_tensor_slices((x_train, one_hot(y_train, n)))
        .shuffle(len(x_train), seed=seed)
        .batch(cfg.batch_size)
        .map(lambda x, y: (augment(tf.cast(x, tf.float32), training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    val_ds = tf.data.Dataset.from_tensor_slices((x_val.astype(np.float32), one_hot(y_val, n))).batch(cfg.batch_size)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=max(2, cfg.patience // 3), restore_best_weights=True)
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        class_weight=balanced_class_weights(y_train, n) if cfg.class_weights else None,
        callbacks=[stop, *callbacks],
        shuffle=False,  # the dataset shuffles itself
        verbose=0,
    )
    base.trainable = False
    return history.history
