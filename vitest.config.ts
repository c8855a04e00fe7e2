import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // End-to-end suites start real daemons (Krater, PostgreSQL, containerd): run files one at a time.
    fileParallelism: false,
  },
});
