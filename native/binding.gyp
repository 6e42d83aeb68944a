{
  "targets": [
    {
      "target_name": "tsblk_native",
      "sources": ["tsblk.c", "uring.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    }
  ]
}
