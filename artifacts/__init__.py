"""What training writes and serving reads: registered models and the tag catalog with its cut points.

Both `training` and `serving` import this package; serving never imports `training`."""
