"""STAND-IN for ComfyUI's main.py (ComfyUI cannot be fetched here).

Serves the two endpoints a health check reads (/ and /system_stats) and logs
the attention choice the way ComfyUI does, so the rollout's health checks run
their real code path against it.
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--listen", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8188)
parser.add_argument("--use-sage-attention", action="store_true")
args, _unknown = parser.parse_known_args()

if args.use_sage_attention:
    try:
        import sageattention  # noqa: F401

        print("Using sage attention", flush=True)
    except Exception as e:  # the line a health check must catch
        print(f"Error running sage attention: {e}, using pytorch attention instead.", flush=True)
else:
    print("Using pytorch attention", flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"system": {"comfyui_version": "stand-in", "argv": sys.argv}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


print(f"To see the GUI go to: http://{args.listen}:{args.port}", flush=True)
ThreadingHTTPServer((args.listen, args.port), Handler).serve_forever()
