"""Is the service healthy: probes (HTTP, TCP, exec), thresholded checks, and watching its process."""
