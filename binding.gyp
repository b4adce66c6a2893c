{
  "target_defaults": {
    "cflags": ["-fstack-protector-strong", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "cflags_cc": ["-fexceptions", "-std=c++17"],
    "cflags_cc!": ["-fno-exceptions"],
    "defines": ["_FORTIFY_SOURCE=2", "_GNU_SOURCE"],
    "ldflags": ["-Wl,-z,relro", "-Wl,-z,now", "-Wl,-z,noexecstack"]
  },
  "conditions": [
    ["OS=='linux'", {
      "targets": [
        {
          "target_name": "modelguard",
          "sources": ["native/addon/addon.cc", "native/addon/seccomp_dl.cc", "native/addon/supervisor.cc", "native/addon/decide.cc",
                      "native/addon/decide_net.cc", "native/addon/decide_fs.cc", "native/addon/remote.cc", "native/addon/dns_sink.cc",
                      "native/addon/read_ranges.cc"],
          "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
          "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
          "libraries": ["-ldl", "-lpthread"]
        },
        {
          "target_name": "guard-exec",
          "type": "executable",
          "sources": ["native/exec/guard-exec.c"],
          "cflags": ["-std=gnu11", "-O2", "-pthread"],
          "ldflags": ["-pthread"]
        }
      ]
    }, {
      "targets": [
        {
          "target_name": "modelguard_unsupported",
          "type": "none"
        }
      ]
    }]
  ]
}
