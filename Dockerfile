# modelguard as a container entrypoint: the model files are scanned before the server starts,
# the server runs behind the `guard run` walls, and a report of everything it attempted is
# written when it stops. guard is PID 1 and does what tini does (signals, zombies).
#
#   docker build -t modelguard-demo .
#   docker run --rm -p 8000:8000 -v "$PWD/reports:/reports" --pids-limit 512 --cap-add SYS_PTRACE modelguard-demo
#   (podman needs no --cap-add. Docker's default seccomp profile allows pidfd_getfd, with which
#   guard's supervisor makes the server's permitted bind and connects, only with SYS_PTRACE; guard
#   drops it before the server starts. Without it the walls line says so and the bind fails.)
#   curl -s -X POST localhost:8000/predict -d '[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]'
#   docker stop <container>      # SIGTERM reaches serve.py; /reports/modelguard.json is written
#
# Your own models: mount them read-only over /models (-v "$PWD/models:/models:ro"); a file that
# scans as suspicious or worse stops the start with exit code 3 and the scan report on stderr.
# Give the image only your command (`docker run IMAGE python3 app.py`): its ENTRYPOINT already is
# guard, and a guard started under guard stops with a line saying so.
#
# Two stages: the builder has the compiler (g++, make, python3 for node-gyp) and the dev
# dependencies (TypeScript, esbuild); the runtime image gets only /opt/modelguard as built and
# pruned, Python with PyTorch, and libseccomp2. Both stages must be the same Node major line: the
# native addons (modelguard's, isolated-vm's) are built against the builder's Node headers.
ARG NODE_LINE=24

FROM node:${NODE_LINE}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/modelguard
# What `npm ci` needs: the lockfile; binding.gyp, native/ and scripts/install-native.mjs (with
# native-files.mjs) for the `install` script (node-gyp: the addon and guard-exec); tsconfig.json,
# src/, scripts/bundle.mjs and scripts/cjs-types.mjs for `prepare` (tsc, the `guard run` bundle,
# the CommonJS declarations). src/ also holds the .proto schemas and the unpickler's Python, read
# at run time. sandbox-profiles/ and bin/ are what the package ships ("files" in package.json).
COPY package.json package-lock.json tsconfig.json binding.gyp ./
COPY native ./native
COPY sandbox-profiles ./sandbox-profiles
COPY src ./src
COPY scripts/install-native.mjs scripts/native-files.mjs scripts/bundle.mjs scripts/cjs-types.mjs ./scripts/
COPY bin ./bin
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf build/Release/obj.target build/Release/.deps

FROM node:${NODE_LINE}-bookworm-slim
# Python and PyTorch (CPU) from Debian; libseccomp2 is the only library modelguard loads itself.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-torch python3-numpy libseccomp2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/modelguard /opt/modelguard
RUN ln -s /opt/modelguard/bin/guard /usr/local/bin/guard

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
