"""The wire contract: subject names and ids, the commit envelope and its headers, the JSON codec."""
