"""Two au-cam-bench method plugins: Hide-and-Seek (trainable) and Score-CAM (post-hoc)."""
