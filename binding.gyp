{
  "targets": [
    {
      "target_name": "pidfd",
      "conditions": [
        ["OS=='linux'", {
          "sources": ["src/addon.cc", "src/calls.cc", "src/watcher.cc", "src/compat.cc", "src/pollfd.cc", "src/mlock.cc"],
          "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
          "defines": [
            "NAPI_VERSION=8",
            "NAPI_CPP_EXCEPTIONS",
            "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
            "NODE_ADDON_API_DISABLE_DEPRECATED",
            "_GLIBCXX_USE_CXX11_ABI=0"
          ],
          "defines!": ["_GLIBCXX_USE_CXX11_ABI=1"],
          "cflags": ["-fvisibility=hidden", "-Wall", "-Wextra"],
          "cflags_cc": ["-fvisibility=hidden", "-std=c++17", "-fexceptions", "-fno-sized-deallocation", "-Wall", "-Wextra"],
          "cflags!": ["-fno-exceptions"],
          "cflags_cc!": ["-fno-exceptions"]
        }, {
          "type": "none"
        }]
      ]
    }
  ]
}
