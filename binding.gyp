{
  # Build variants (node-gyp rebuild -- -Dsanitize=1 / -Dwerror=1):
  #   sanitize=1  AddressSanitizer + UndefinedBehaviorSanitizer (npm run test:sanitize)
  #   werror=1    warnings are errors (CI builds this way; npm run build:strict)
  "variables": { "sanitize%": 0, "werror%": 0 },
  "targets": [
    {
      "target_name": "pidfd",
      "conditions": [
        ["OS=='linux'", {
          "sources": ["src/addon.cc", "src/calls.cc", "src/watcher.cc", "src/compat.cc", "src/pollfd.cc", "src/mlock.cc", "src/thread.cc", "src/sampler.cc"],
          # node-addon-api's headers as system headers: the warning flags below are for our code.
          "include_dirs": [],
          "defines": [
            "NAPI_VERSION=8",
            "NAPI_CPP_EXCEPTIONS",
            "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
            "NODE_ADDON_API_DISABLE_DEPRECATED",
            "_GLIBCXX_USE_CXX11_ABI=0"
          ],
          "defines!": ["_GLIBCXX_USE_CXX11_ABI=1"],
          "cflags": ["-fvisibility=hidden", "-Wall", "-Wextra"],
          "cflags_cc": ["-isystem", "<!(node -p \"require('path').dirname(require.resolve('node-addon-api/package.json'))\")", "-fvisibility=hidden", "-std=c++17", "-fexceptions", "-fno-sized-deallocation", "-Wall", "-Wextra"],
          "cflags!": ["-fno-exceptions"],
          "cflags_cc!": ["-fno-exceptions"],
          "conditions": [
            ["sanitize==1", {
              "cflags_cc": ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-O1", "-g"],
              "ldflags": ["-fsanitize=address,undefined"]
            }],
            ["werror==1", {
              "cflags_cc": ["-Werror", "-Wshadow", "-Wconversion", "-Wno-sign-conversion"]
            }]
          ]
        }, {
          "type": "none"
        }]
      ]
    }
  ]
}
