"""Infrastructure the product runs on: the no-Docker local stack and the compose files."""
