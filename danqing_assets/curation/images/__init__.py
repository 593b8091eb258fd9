"""Image stage: download (politely, behind an SSRF guard), sniff, decode and filter the images of the pairs."""
