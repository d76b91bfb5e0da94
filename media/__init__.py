"""The hangar's content packaging pipeline: source video and text in, on-board packages out.

``media package SRC --out DIR ...`` (or ``python -m media package ...``): a video becomes an HLS VOD
ladder cut by ffmpeg (:mod:`media.video`), a text becomes HTML pages (:mod:`media.book`); both get a
``package.json`` (:mod:`appliance.content.manifest`) listing every file with its size and SHA-256.
"""
