-- Take the workers ARGV[3..] out of the registry.
redis.call('HDEL', WORKERS, unpack(ARGV, 3))
redis.call('ZREM', WORKER_UNTIL, unpack(ARGV, 3))
return 1
