"""The built-in graph files and their JSON Schema, shipped as package data (`mora.graphs`)."""
