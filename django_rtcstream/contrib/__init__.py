"""Optional integrations. Nothing here is imported by the app itself."""
