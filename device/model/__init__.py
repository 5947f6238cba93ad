"""The runtime contract: how a model file is opened, read and fed, defined once for every tl-edge tool.

Lives here: choosing the TFLite runtime and building interpreters from a path or bytes
(`runtime.make_interpreter`), reading what a model file says about itself — labels, input spec, variant,
operating points (`metadata`; the standard TFLITE_METADATA record in `tflite_metadata`, the model
FlatBuffer's metadata entries in `tflite_model`, both by field slot over `flatbuf`), decoding and
resizing an image or a frame into the input tensor and checking that tensor (`image`, `contract`),
finding, checking and reading the scores and the embedding (`outputs`), and the per-frame `Classifier`
built on those. `tl.train` and `tl.convert` import this room
so that training, calibration, checks and the device feed the model the same way.
May import: `tl.device.errors`, numpy, OpenCV, flatbuffers, a TFLite runtime. Never TensorFlow.
"""
