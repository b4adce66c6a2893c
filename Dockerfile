# modelguard as a container entrypoint: the model files are scanned before the server starts,
# the server runs behind the `guard run` walls, and a report of everything it attempted is
# written when it stops. guard is PID 1 and does what tini does (signals, zombies).
#
#   docker build -t modelguard-demo .
#   docker run --rm -p 8000:8000 -v "$PWD/reports:/reports" --pids-limit 512 modelguard-demo
#   curl -s -X POST localhost:8000/predict -d '[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]'
#   docker stop <container>      # SIGTERM reaches serve.py; /reports/modelguard.json is written
#
# Your own models: mount them read-only over /models (-v "$PWD/models:/models:ro"); a file that
# scans as suspicious or worse stops the start with exit code 3 and the scan report on stderr.
FROM node:20-bookworm

# Python and PyTorch (CPU) from Debian; libseccomp2 is the only runtime library modelguard needs.
# g++, make and python3 build the native addon during `npm ci`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-torch python3-numpy libseccomp2 g++ make \
 && rm -rf /var/lib/apt/lists/*

# modelguard, installed from this checkout: `npm ci` compiles the addon and guard-exec
# (node-gyp, headers from the image's Node), the TypeScript and the `guard run` bundle (`prepare`).
WORKDIR /opt/modelguard
COPY package.json package-lock.json tsconfig.json binding.gyp ./
COPY native ./native
COPY sandbox-profiles ./sandbox-profiles
COPY src ./src
COPY scripts/bundle.mjs ./scripts/bundle.mjs
COPY bin ./bin
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund \
 && ln -s /opt/modelguard/bin/guard /usr/local/bin/guard

# The sample inference server and a demo model.
COPY docs/docker/serve.py docs/docker/make_model.py /srv/
RUN mkdir -p /models /reports && python3 /srv/make_model.py /models/model.pt

# Gate: scan everything under /models; refuse to start at `suspicious` or worse.
ENV MODELGUARD_SCAN=/models \
    MODELGUARD_FAIL_ON=suspicious \
    MODELGUARD_PROFILE=inference \
    MODELGUARD_REPORT=/reports/modelguard.json \
    MODELGUARD_ALLOW_NET=*:8000

EXPOSE 8000
ENTRYPOINT ["guard", "entrypoint", "--"]
CMD ["python3", "/srv/serve.py"]
