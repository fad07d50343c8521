"""Local stand-ins for outside services, served over real loopback sockets."""
