{
  "targets": [
    {
      "target_name": "tsblk_native",
      "sources": ["tsblk.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    }
  ]
}
