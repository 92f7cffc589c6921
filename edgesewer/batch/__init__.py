"""`edgesewer batch`: an archive of inspection videos through the `edgesewer run` pipeline, on Ray.

- `sources`: the archive (a folder, a glob or a list file) -> video files with unique output names.
- `manifest`: DIR/manifest.json, each video's state (pending, running, done, failed), written only by the driver.
- `worker`: one video -> DIR/videos/<name>/ (events, report, observation list); torch- and Ray-free.
- `summary`: DIR/summary.csv and DIR/summary.html, one row per video and totals.
- `ray_runner`: the driver: Ray Core tasks, resume, retries, progress.

Ray is imported only by `ray_runner` (the `batch` extra); the other modules need only the runtime.
"""
