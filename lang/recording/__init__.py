"""Recordings (SPEC §14): HAR files of WebSocket conversations, `--record`, `evt replay`,
`evt codegen`."""
