"""Hardware, each adapter with its fake beside it (the gpiozero way).

Lives here: `frames` (the `Frame`/`Source` protocol and rate capping), `cameras` (picamera2, imported
lazily; OpenCV devices and RTSP with reconnect), `sources` (video files and folders replayed on their
own timestamps, and `open_source` choosing among all of them), `fakes` (`FakeCamera` for tests),
`doors` (gpiozero relay and servo doors, the mock door, no door). Nothing here reads the config file.
May import: `tl.device.errors`, `tl.device.model`, `tl.device.data`, `tl.device.recognition`.
"""
