"""tl.train: MobileNet transfer-learning classifiers from a folder of photos."""
